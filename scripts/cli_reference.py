"""Write docs/cli.md, the command-line reference, from the commands' own --help.

    .venv/bin/python scripts/cli_reference.py          # rewrite docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if docs/cli.md is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADER = """# wdsp command-line reference

Generated from `--help` by `scripts/cli_reference.py`; do not edit by hand.

Every command works on a workspace: `-w/--workspace DIR`, else `$WDSP_WORKSPACE`, else the
current folder. Commands that report take `--json`: one JSON document on stdout, logs and
progress on stderr. Errors are one `Error:` line and one `Hint:` line on stderr.

Progress goes to stderr: Rich bars on a terminal; when stderr is a file or a pipe (cron, CI
logs), plain lines instead: `edit` one when it starts, one per iteration, about every 10% of an
iteration's optimisation steps and one per commit; `covariance` one when it starts and about every
10% of its tokens.

Commands check in this order, so a refusal comes in well under a second: the arguments, then the
workspace's lock (a command that changes the workspace is refused at once, exit 7, while another
holds it), then the input files (`edit` reads every request and checks that each prompt,
paraphrase and neighbour, with its target and the longest context template, fits the model's
context, read from the model's config), and only then the model. `init` refuses a folder that
already holds a workspace before it loads the model. `rollback -N` counts back from HEAD
(`wdsp rollback -1` undoes the last edit).

| exit code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected error, or the disk refused a write (nothing half-written is left) |
| 2 | bad input: a malformed or empty facts file, a prompt longer than the model's context, an unknown method, a bad option value |
| 3 | model: cannot be loaded, or not the workspace's base model (fingerprint) |
| 4 | statistics: missing for a layer, from another corpus (use --force), or corrupt |
| 5 | edit refused: a singular system or a non-finite update |
| 6 | workspace: missing, of a newer schema, damaged (`wdsp check` lists each repair), or no such iteration |
| 7 | workspace busy: another command holds its lock |
| 8 | `edit --gate`: a batch missed the gate's thresholds; it is in `rejected/`, HEAD did not move |
| 9 | conflicts: `wdsp conflicts` found requests that meet earlier facts (see its `--fail-on`), or `wdsp edit --on-conflict refuse` refused them (docs/conflicts.md) |
| 130 | interrupted (Ctrl-C); the workspace keeps its last committed iteration |
"""


def render() -> str:
    from typer.testing import CliRunner

    from wdsp_cli.cli import app

    env = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    parts = [HEADER]
    commands = [None] + [c.name or c.callback.__name__ for c in app.registered_commands]
    for name in commands:
        args = [name, "--help"] if name else ["--help"]
        result = CliRunner().invoke(app, args, env=env, terminal_width=100)
        title = f"wdsp {name}" if name else "wdsp"
        text = "\n".join(line.rstrip() for line in result.stdout.strip("\n").splitlines())
        parts.append(f"## `{title}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    path = ROOT / "docs" / "cli.md"
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run .venv/bin/python scripts/cli_reference.py", file=sys.stderr)
            sys.exit(1)
        return
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
