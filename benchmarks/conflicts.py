"""What MEMIT does with facts that meet earlier facts (docs/conflicts.md), on the default model.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/conflicts.py [--limit 50] [--json out.json]

(i) Twice-changed facts. ``--limit`` CounterFact records (counterfact_rome.jsonl from ``--offset``,
    which carries relation ids): batch 1 edits A -> B (the record's target_new), a later batch edits
    A -> C for the same subjects and prompts, C the target_new of another record of the same
    relation_id (else of any record) that is neither B nor the true A. Measured on the prompt and on
    A's paraphrases, by teacher-forced NLL of each target (CounterFact's comparison): how often C
    beats B, C beats the true A, B still beats A, and which of A, B, C is most likely; after batch 1,
    after batch 2 with the common number of steps and with ``changed_fact_steps`` x them (``wdsp
    edit``'s default since engine 3), and for A -> C edited directly into the base model.
(ii) Several facts about one subject in one batch. Subjects of the three EasyEdit CounterFact parts
    with records of several relations (the relation read from the prompt template, as the ROME file
    names it; one record per relation, up to ``--per-subject`` each, ``--limit`` requests in all):
    each subject's records edited together as one batch, against each record edited alone
    (a batch of one) and against the same requests interleaved into batches of the same sizes that
    hold different subjects (the control for the batch size); all from the base model. Efficacy (P(new) > P(true) on the prompt),
    paraphrase success and the new target's NLL per request, and how many requests succeed only
    alone or only together.

The statistics are the built-in corpus's (``--corpus builtin``, ``--tokens`` of it), the edit the
preset ``--preset`` (memit-smollm2), the context templates sampled once from the base model; every
condition starts from the base weights (restored in float32 masters between conditions). Also
prints what ``wdsp conflicts`` reports on the same batches. One JSON document on stdout (and to
``--json``), with the CPU model and threads; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.conflicts import find_conflicts, normalise, replaced_targets  # noqa: E402
from wdsp_cli.data.corpus import builtin_corpus  # noqa: E402
from wdsp_cli.data.requests import EditRequest, load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import score_targets  # noqa: E402
from wdsp_cli.model.hardware import cpu_model  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import compute_covariance  # noqa: E402

ROME = DATA / "counterfact" / "counterfact_rome.jsonl"
EASYEDIT = [DATA / "counterfact" / f"counterfact_easyedit.part{n}.jsonl" for n in (1, 2, 3)]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Editor:
    """The model, statistics and templates, and a way back to the base weights."""

    def __init__(self, model, tokenizer, config, moments, templates) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.moments, self.templates = moments, templates
        self.state = WeightState(model)
        self.base = self.state.snapshot(edited_modules(model, config))
        self.seconds: list[float] = []

    def reset(self) -> None:
        self.state.restore(self.base)

    def edit(self, requests: list[EditRequest], iteration: int = 1, replaced=None) -> None:
        clock = time.perf_counter()
        edit_batch(self.model, self.tokenizer, requests, self.config, self.moments, self.templates, self.state,
                   iteration=iteration, replaced=replaced)
        self.seconds.append(time.perf_counter() - clock)
        log(f"  edited {len(requests)} request(s) in {self.seconds[-1]:.1f} s")

    def nll(self, prompts: list[str], targets: list[str]) -> list[float]:
        return score_targets(self.model, self.tokenizer, prompts, targets)[0].tolist()


# --- (i) twice-changed facts ----------------------------------------------------------------------

def second_targets(requests: list[EditRequest], offset: int) -> list[str]:
    """C for each request: the target_new of the next record (cycling through the ROME file from the
    request's own place) of the same relation_id that is neither B nor the true target; else of any."""
    records = [json.loads(line) for line in ROME.open(encoding="utf-8") if line.strip()]
    rewrites = [r["requested_rewrite"] for r in records]
    out = []
    for i, request in enumerate(requests):
        own = rewrites[offset + i]
        taken = {normalise(request.target_new), normalise(request.target_true or "")}
        order = rewrites[offset + i + 1:] + rewrites[:offset + i]
        pick = next((r["target_new"]["str"] for r in order if r["relation_id"] == own["relation_id"]
                     and normalise(r["target_new"]["str"]) not in taken), None)
        out.append(pick or next(r["target_new"]["str"] for r in order if normalise(r["target_new"]["str"]) not in taken))
    return out


def three_way(editor: Editor, requests: list[EditRequest], seconds: list[str]) -> dict:
    """Over the prompt and the paraphrases: how often C beats B, C beats the true A, B beats A, which
    of the three is most likely (fractions, in %), and each target's mean NLL."""
    rows = []  # (request index, kind, prompt)
    for i, r in enumerate(requests):
        rows += [(i, "prompt", r.rewrite_prompt)] + [(i, "paraphrases", p) for p in r.paraphrases]
    prompts = [p for _, _, p in rows]
    scores = {name: editor.nll(prompts, [pick(requests[i], seconds[i]) for i, _, _ in rows])
              for name, pick in (("A", lambda r, c: r.target_true), ("B", lambda r, c: r.target_new),
                                 ("C", lambda r, c: c))}
    out = {}
    for kind in ("prompt", "paraphrases"):
        per_request: dict[int, list[dict]] = defaultdict(list)
        for j, (i, k, _) in enumerate(rows):
            if k == kind:
                a, b, c = scores["A"][j], scores["B"][j], scores["C"][j]
                per_request[i].append({"C>B": c < b, "C>A": c < a, "B>A": b < a, "says_A": a <= min(b, c),
                                       "says_B": b < a and b <= c, "says_C": c < a and c < b,
                                       "nll_A": a, "nll_B": b, "nll_C": c})
        if not per_request:
            continue
        keys = list(next(iter(per_request.values()))[0])
        # CounterFact's way: a mean over each request's prompts, then over requests
        out[kind] = {key: round((100 if not key.startswith("nll") else 1) * sum(
            sum(float(x[key]) for x in xs) / len(xs) for xs in per_request.values()) / len(per_request), 3)
            for key in keys}
    return out


def twice_changed(editor: Editor, args) -> dict:
    requests = load_requests(ROME, offset=args.offset, limit=args.limit)
    seconds = second_targets(requests, args.offset)
    again = [replace(r, target_new=c, request_id=f"{r.request_id}-again") for r, c in zip(requests, seconds)]
    report = find_conflicts(again, len(again), [(1, requests)])
    result = {"requests": len(requests), "batch_size": len(requests),
              "same_relation_C": sum(1 for r, c in zip(requests, seconds) if c),
              "wdsp_conflicts": report.counts()}
    log(f"(i) {len(requests)} twice-changed facts")
    editor.reset()
    result["base"] = three_way(editor, requests, seconds)
    editor.edit(requests, iteration=1)
    result["after_A_to_B"] = three_way(editor, requests, seconds)
    editor.edit(again, iteration=2)  # as before engine 3: the common number of steps
    result["after_A_to_B_then_A_to_C"] = three_way(editor, requests, seconds)
    editor.reset()
    editor.edit(requests, iteration=1)
    editor.edit(again, iteration=2, replaced=replaced_targets(requests, again))  # wdsp edit since engine 3
    result["after_A_to_B_then_A_to_C_more_steps"] = three_way(editor, requests, seconds)
    result["changed_fact_steps"] = editor.config.changed_fact_steps
    editor.reset()
    editor.edit(again, iteration=1)
    result["A_to_C_directly"] = three_way(editor, requests, seconds)
    editor.reset()
    result["examples"] = [{"subject": r.subject, "prompt": r.prompt, "A": r.target_true, "B": r.target_new, "C": c}
                          for r, c in list(zip(requests, seconds))[:5]]
    return result


# --- (ii) several facts about one subject in one batch --------------------------------------------

def template_relations() -> dict[str, str]:
    """Normalised prompt template -> relation_id, from the ROME file's records (EasyEdit's carry no
    relation id; a template the ROME file gives two relations is left out)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for line in ROME.open(encoding="utf-8"):
        if line.strip():
            rewrite = json.loads(line)["requested_rewrite"]
            seen[normalise(rewrite["prompt"])].add(rewrite["relation_id"])
    return {t: next(iter(rs)) for t, rs in seen.items() if len(rs) == 1}


def subject_groups(limit: int, per_subject: int) -> list[list[EditRequest]]:
    """Subjects with records of at least two relations across the EasyEdit parts (the relation read
    from the prompt template, ``template_relations``), in order of their first record: one record per
    relation, up to ``per_subject`` each, ``limit`` requests in all. Distinct relations, so the
    requests are different facts (not the same question twice, nor a paraphrase of one)."""
    relations = template_relations()
    by_subject: dict[str, dict[str, EditRequest]] = defaultdict(dict)
    for path in EASYEDIT:
        for r in load_requests(path):
            relation, group = relations.get(normalise(r.prompt)), by_subject[normalise(r.subject)]
            if relation and relation not in group and len(group) < per_subject:
                group[relation] = r
    groups, total = [], 0
    for group in by_subject.values():
        if len(group) >= 2 and total + 2 <= limit:
            chosen = list(group.values())[:min(len(group), limit - total)]
            groups.append(chosen)
            total += len(chosen)
    return groups


def efficacy(editor: Editor, requests: list[EditRequest]) -> list[dict]:
    """Per request: P(new) > P(true) on the prompt, the paraphrases' share of the same, NLL(new)."""
    prompts, targets, owners = [], [], []
    for i, r in enumerate(requests):
        for p in (r.rewrite_prompt, *r.paraphrases):
            prompts += [p, p]
            targets += [r.target_new, r.target_true]
            owners.append(i)
    nll = editor.nll(prompts, targets)
    out = []
    for i, r in enumerate(requests):
        pairs = [(nll[2 * j], nll[2 * j + 1]) for j, o in enumerate(owners) if o == i]
        (new, true), paraphrases = pairs[0], pairs[1:]
        out.append({"id": r.request_id, "efficacy": new < true, "nll_new": new,
                    "paraphrase": sum(n < t for n, t in paraphrases) / len(paraphrases) if paraphrases else None})
    return out


def mixed_batches(groups: list[list[EditRequest]]) -> list[list[EditRequest]]:
    """The same requests in batches of the groups' sizes, but interleaved (the first record of every
    subject, then the second...), so that a batch holds different subjects: the control for the
    batch size."""
    order = [g[j] for j in range(max(map(len, groups))) for g in groups if j < len(g)]
    out, start = [], 0
    for g in groups:
        out.append(order[start:start + len(g)])
        start += len(g)
    return out


def same_subject(editor: Editor, args) -> dict:
    groups = subject_groups(args.limit, args.per_subject)
    flat = [r for g in groups for r in g]
    mixed = mixed_batches(groups)
    report = find_conflicts(flat, len(flat))
    log(f"(ii) {len(groups)} subjects, {len(flat)} requests")
    editor.reset()
    rows = {"base": {x["id"]: x for x in efficacy(editor, flat)}, "alone": {}, "together": {}, "mixed": {}}
    for r in flat:
        editor.reset()
        editor.edit([r])
        rows["alone"].update((x["id"], x) for x in efficacy(editor, [r]))
    for name, batches in (("together", groups), ("mixed", mixed)):
        for batch in batches:
            editor.reset()
            editor.edit(batch)
            rows[name].update((x["id"], x) for x in efficacy(editor, batch))
    editor.reset()

    def summary(by_id):
        xs = [by_id[r.request_id] for r in flat]
        para = [x["paraphrase"] for x in xs if x["paraphrase"] is not None]
        return {"efficacy": round(100 * sum(x["efficacy"] for x in xs) / len(xs), 2),
                "paraphrase": round(100 * sum(para) / len(para), 2) if para else None,
                "mean_nll_new": round(sum(x["nll_new"] for x in xs) / len(xs), 3)}

    alone, together = rows["alone"], rows["together"]
    ids = [r.request_id for r in flat]
    return {"subjects": len(groups), "requests": len(flat), "group_sizes": [len(g) for g in groups],
            "wdsp_conflicts_all_in_one_batch": report.counts(),
            "mixed_batches_sharing_a_subject": sum(len({normalise(r.subject) for r in b}) < len(b) for b in mixed),
            **{name: summary(by_id) for name, by_id in rows.items()},
            "only_alone_succeeds": sum(alone[i]["efficacy"] and not together[i]["efficacy"] for i in ids),
            "only_together_succeeds": sum(together[i]["efficacy"] and not alone[i]["efficacy"] for i in ids),
            "mean_nll_new_together_minus_alone": round(
                sum(together[i]["nll_new"] - alone[i]["nll_new"] for i in ids) / len(ids), 3),
            "per_request": [{"id": r.request_id, "subject": r.subject, "prompt": r.prompt, "new": r.target_new,
                             "true": r.target_true,
                             **{f"{name}_nll_new": round(rows[name][r.request_id]["nll_new"], 3) for name in rows},
                             **{f"{name}_efficacy": rows[name][r.request_id]["efficacy"] for name in rows}}
                            for r in flat]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=50, help="Records in (i) and requests in (ii).")
    ap.add_argument("--offset", type=int, default=0, help="First record of counterfact_rome.jsonl in (i).")
    ap.add_argument("--per-subject", type=int, default=3, help="(ii): records per subject at most.")
    ap.add_argument("--tokens", type=int, default=20_000, help="Tokens of the built-in corpus for the statistics.")
    ap.add_argument("--preset", default="memit-smollm2")
    ap.add_argument("--steps", type=int, help="Override the optimisation steps (quick runs only).")
    ap.add_argument("--only", choices=("twice", "subject"), help="Run one experiment only.")
    ap.add_argument("--json", type=Path, help="Also write the document here.")
    args = ap.parse_args()
    clock = time.perf_counter()
    config = preset(args.preset)
    if args.steps:
        config = config.replace(v_num_grad_steps=args.steps)
    model, tok = load_model("smollm2-135m-instruct")
    log(f"statistics: {args.tokens} tokens of the built-in corpus, layers {list(config.layers)}")
    stats = compute_covariance(model, tok, config.layers, builtin_corpus().texts(), max_tokens=args.tokens)
    templates = generate_context_templates(model, tok, config.context_template_count,
                                           config.context_template_length, config.seed)
    editor = Editor(model, tok, config, {l: s.second_moment for l, s in stats.items()}, templates)
    result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "reduced": args.limit < 50, "model": "smollm2-135m-instruct", "config": config.to_dict(),
              "cpu_model": cpu_model(), "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if args.only in (None, "twice"):
        result["twice_changed"] = twice_changed(editor, args)
    if args.only in (None, "subject"):
        result["same_subject_in_one_batch"] = same_subject(editor, args)
    result["edit_seconds"] = [round(s, 1) for s in editor.seconds]
    result["total_seconds"] = round(time.perf_counter() - clock, 1)
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
