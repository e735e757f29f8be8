"""Edit requests: what to change in the model, and how to check it; loaders for the files that hold them.

Responsibility: turn a requests file (our hand-written facts JSONL, CounterFact in the ROME or the
EasyEdit format, zsRE in the MEND format) into validated ``EditRequest`` objects, or fail before any
model work with an ``InputError`` that names the file, the 1-based line and the fix. Pure Python.

Public API
    ``LocalityProbe(prompt, answer)``            a prompt whose answer the edit must not change.
    ``EditRequest(prompt, subject, target_new, ...)``  one fact to write; ``.rewrite_prompt``.
    ``load_requests(path, format="auto", *, limit=None, offset=0) -> list[EditRequest]``
    ``detect_format(record) -> str``             the format a decoded record is written in.
    ``FORMATS``                                  the accepted format names (``"auto"`` excluded).
    ``request_to_dict(r)`` / ``request_from_dict(d)``  an exact JSON round trip (workspace storage).

Files are JSONL (one object a line; blank lines and lines starting with ``#`` or ``//`` are skipped)
or, when the first non-blank character is ``[``, one JSON array (EasyEdit and MEND ship arrays); the
line of an array element is the line where it starts. ``docs/facts-format.md`` documents the formats.

How each format maps to ``EditRequest``:
    facts                 prompt (a "{}" template, or the subject written in: its first occurrence
                          becomes "{}"), subject, target, old_target, paraphrases, neighbours, id.
    counterfact-rome      requested_rewrite.{prompt, subject, target_new.str, target_true.str},
                          paraphrase_prompts, neighborhood_prompts answered by target_true; case_id.
    counterfact-easyedit  prompt with the subject's first occurrence made "{}", target_new,
                          ground_truth, rephrase_prompt, (locality_prompt, locality_ground_truth); case_id.
    zsre-mend             src with the subject made "{}", answers[0], rephrase,
                          (loc + "?", loc_ans) as MEMIT evaluates zsRE; id "line N".

Subject matching in dataset prompts: exact first, then case-insensitive (the template keeps the
prompt's text around the subject; ``rewrite_prompt`` then spells the subject as the record does).
All 1,834 zsRE records and all 19,728 EasyEdit CounterFact records in ../shared/data match exactly,
so the fallback only guards unseen data; a record that matches neither way is an ``InputError``
naming file:line. Hand-written facts files get the exact match only, so a typo is reported.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["FORMATS", "EditRequest", "LocalityProbe", "detect_format", "load_requests", "request_from_dict",
           "request_to_dict"]

_FORMAT_DOC = "docs/facts-format.md"
_PROTOCOLS = ("counterfact", "zsre", "facts")
_ONE_OBJECT = "write each record as one JSON object {...} on one line"
_ONE_ARRAY = "a file starting with [ holds one JSON array of objects: [{...}, {...}]"


def _nonempty(value: Any, what: str) -> str:
    """``value`` stripped; an InputError unless it is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string, got {value!r}",
                         f"give {what} as text; see {_FORMAT_DOC}")
    return value.strip()


def _full_prompt(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or "{}" in value:
        raise InputError(f"{what} must be a full, non-empty prompt without '{{}}', got {value!r}",
                         f"write the subject into the {what}")
    return value


@dataclass(frozen=True)
class LocalityProbe:
    """An unrelated prompt (no "{}") whose answer (stored stripped, e.g. "French") must survive the edit."""

    prompt: str
    answer: str

    def __post_init__(self) -> None:
        _full_prompt(self.prompt, "neighbour prompt")
        object.__setattr__(self, "answer", _nonempty(self.answer, "neighbour answer"))


@dataclass(frozen=True)
class EditRequest:
    """One fact to write: ``prompt.replace("{}", subject)`` should be completed by ``target_new``.

    ``prompt`` is a template with exactly one "{}"; ``target_new`` and ``target_true`` are stored
    stripped (tokenizers add the leading space); ``paraphrases`` are full prompts that should also
    yield ``target_new``; ``neighbours`` must keep their answers; ``request_id`` is the case_id, the
    fact's id or "line N"; ``source`` is "path:line"; ``protocol`` ("counterfact" | "zsre" | "facts")
    names the metric protocol that applies. Invalid values raise ``InputError``.
    """

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    neighbours: tuple[LocalityProbe, ...] = ()
    request_id: str = ""
    source: str = ""
    protocol: str = "facts"

    def __post_init__(self) -> None:
        _nonempty(self.subject, "subject")
        if not isinstance(self.prompt, str) or self.prompt.count("{}") != 1:
            found = self.prompt.count("{}") if isinstance(self.prompt, str) else 0
            raise InputError(f"prompt template must contain exactly one '{{}}' for the subject, "
                             f"found {found}: {self.prompt!r}",
                             "write the subject into the prompt once, or mark its one place with {}")
        set_field = object.__setattr__
        set_field(self, "target_new", _nonempty(self.target_new, "target_new"))
        if self.target_true is not None:
            set_field(self, "target_true", _nonempty(self.target_true, "target_true"))
        set_field(self, "paraphrases", tuple(_full_prompt(p, "paraphrase") for p in self.paraphrases))
        set_field(self, "neighbours", tuple(self.neighbours))
        if not all(isinstance(n, LocalityProbe) for n in self.neighbours):
            raise InputError("neighbours must be LocalityProbe objects", "wrap each as LocalityProbe(prompt, answer)")
        if self.protocol not in _PROTOCOLS:
            raise InputError(f"unknown protocol {self.protocol!r}", f"use one of: {', '.join(_PROTOCOLS)}")

    @property
    def rewrite_prompt(self) -> str:
        """The prompt with the subject filled in (``str.replace``: prompts may hold other braces)."""
        return self.prompt.replace("{}", self.subject)


def request_to_dict(request: EditRequest) -> dict:
    """Every field of ``request`` as JSON types; ``request_from_dict`` inverts it exactly."""
    return {"prompt": request.prompt, "subject": request.subject, "target_new": request.target_new,
            "target_true": request.target_true, "paraphrases": list(request.paraphrases),
            "neighbours": [{"prompt": n.prompt, "answer": n.answer} for n in request.neighbours],
            "request_id": request.request_id, "source": request.source, "protocol": request.protocol}


def request_from_dict(data: dict) -> EditRequest:
    try:
        return EditRequest(**{**data, "paraphrases": tuple(data.get("paraphrases", ())),
                              "neighbours": tuple(LocalityProbe(**n) for n in data.get("neighbours", ()))})
    except TypeError as exc:
        raise InputError(f"malformed stored request: {exc}", "the workspace file was edited by hand") from None


# --- per-format parsers: (record, "path:line") -> EditRequest; errors get path:line in load_requests ---

def _get(rec: dict, key: str) -> Any:
    if key not in rec:
        raise InputError(f"missing field '{key}'", f"add \"{key}\" to the record; see {_FORMAT_DOC}")
    return rec[key]


def _str(rec: dict, key: str) -> str:
    value = _get(rec, key)
    if not isinstance(value, str):
        raise InputError(f"field '{key}' must be a string, got {type(value).__name__}",
                         f"write \"{key}\" as a JSON string")
    if not value.strip():
        raise InputError(f"field '{key}' is empty", f"write the text of \"{key}\"")
    return value


def _strs(rec: dict, key: str) -> list[str]:
    """An optional string or list of strings (EasyEdit writes both) as a list."""
    value = rec.get(key, [])
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"field '{key}' must be a string or a list of strings", f"write \"{key}\": [\"...\"]")
    return value


def _first(rec: dict, key: str) -> str:
    """The first of a required string or list of strings."""
    _get(rec, key)
    values = _strs(rec, key)
    if not values or not values[0].strip():
        raise InputError(f"field '{key}' is empty", f"give the answer in \"{key}\"")
    return values[0]


def _line_id(source: str) -> str:
    return f"line {source.rpartition(':')[2]}" if source else ""


def _template(prompt: str, subject: str, *, ignore_case: bool) -> str:
    """``prompt`` with the subject's first occurrence made "{}" (unchanged if it already has "{}")."""
    if "{}" in prompt:
        return prompt
    start = prompt.find(subject)
    end = start + len(subject)
    if start < 0 and ignore_case and (match := re.search(re.escape(subject), prompt, re.IGNORECASE)):
        start, end = match.span()
    if start < 0:
        raise InputError(f"subject {subject!r} does not occur in prompt {prompt!r}",
                         "write the subject into the prompt exactly as in \"subject\", or mark its place with {}")
    return prompt[:start] + "{}" + prompt[end:]


_FACTS_KEYS = ("prompt", "subject", "target", "old_target", "paraphrases", "neighbours", "id")


def _parse_facts(rec: dict, source: str) -> EditRequest:
    for key in rec:
        if key not in _FACTS_KEYS:
            close = difflib.get_close_matches(key, _FACTS_KEYS, n=1)
            raise InputError(f"unknown field '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
                             f"allowed fields: {', '.join(_FACTS_KEYS)}")
    subject = _str(rec, "subject")
    neighbours = rec.get("neighbours", [])
    if not isinstance(neighbours, list) or not all(isinstance(n, dict) and set(n) == {"prompt", "answer"}
                                                   for n in neighbours):
        raise InputError("field 'neighbours' must be a list of objects with exactly 'prompt' and 'answer'",
                         'write "neighbours": [{"prompt": "The capital of Germany is", "answer": "Berlin"}]')
    rid = rec.get("id", _line_id(source))
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or not str(rid).strip():
        raise InputError(f"field 'id' must be a non-empty string or an integer, got {rid!r}",
                         'write e.g. "id": "dd-lang", or leave it out to use the line number')
    return EditRequest(
        prompt=_template(_str(rec, "prompt"), subject, ignore_case=False),
        subject=subject,
        target_new=_str(rec, "target"),
        target_true=_str(rec, "old_target") if "old_target" in rec else None,
        paraphrases=tuple(p.replace("{}", subject) for p in _strs(rec, "paraphrases")),
        neighbours=tuple(LocalityProbe(_str(n, "prompt"), _str(n, "answer")) for n in neighbours),
        request_id=str(rid),
        source=source,
        protocol="facts",
    )


def _parse_counterfact_rome(rec: dict, source: str) -> EditRequest:
    rewrite = _get(rec, "requested_rewrite")
    if not (isinstance(rewrite, dict) and isinstance(rewrite.get("target_new"), dict)
            and isinstance(rewrite.get("target_true"), dict)):
        raise InputError("'requested_rewrite' must be an object whose target_new and target_true are objects",
                         'write "target_new": {"str": "..."} and "target_true": {"str": "..."}')
    old = _str(rewrite["target_true"], "str")
    return EditRequest(
        prompt=_str(rewrite, "prompt"),
        subject=_str(rewrite, "subject"),
        target_new=_str(rewrite["target_new"], "str"),
        target_true=old,
        paraphrases=tuple(_strs(rec, "paraphrase_prompts")),
        neighbours=tuple(LocalityProbe(p, old) for p in _strs(rec, "neighborhood_prompts")),
        request_id=str(_get(rec, "case_id")),
        source=source,
        protocol="counterfact",
    )


def _parse_counterfact_easyedit(rec: dict, source: str) -> EditRequest:
    subject = _str(rec, "subject")
    prompts, answers = _strs(rec, "locality_prompt"), _strs(rec, "locality_ground_truth")
    if len(prompts) != len(answers):
        raise InputError(f"{len(prompts)} locality_prompt but {len(answers)} locality_ground_truth",
                         "give one locality_ground_truth per locality_prompt")
    return EditRequest(
        prompt=_template(_str(rec, "prompt"), subject, ignore_case=True),
        subject=subject,
        target_new=_first(rec, "target_new"),
        target_true=_first(rec, "ground_truth"),
        paraphrases=tuple(_strs(rec, "rephrase_prompt")),
        neighbours=tuple(LocalityProbe(p, a) for p, a in zip(prompts, answers)),
        request_id=str(rec.get("case_id", _line_id(source))),
        source=source,
        protocol="counterfact",
    )


def _parse_zsre_mend(rec: dict, source: str) -> EditRequest:
    subject = _str(rec, "subject")
    has_loc = "loc" in rec or "loc_ans" in rec
    return EditRequest(
        prompt=_template(_str(rec, "src"), subject, ignore_case=True),
        subject=subject,
        target_new=_first(rec, "answers"),
        paraphrases=tuple(_strs(rec, "rephrase")),
        neighbours=(LocalityProbe(_str(rec, "loc") + "?", _str(rec, "loc_ans")),) if has_loc else (),
        request_id=_line_id(source),
        source=source,
        protocol="zsre",
    )


# format -> (parser, keys that identify it); detection tries them in this order.
_PARSERS: dict[str, tuple[Callable[[dict, str], EditRequest], tuple[str, ...]]] = {
    "counterfact-rome": (_parse_counterfact_rome, ("requested_rewrite",)),
    "counterfact-easyedit": (_parse_counterfact_easyedit, ("prompt", "subject", "target_new", "ground_truth")),
    "zsre-mend": (_parse_zsre_mend, ("src", "subject", "answers")),
    "facts": (_parse_facts, ("prompt", "subject", "target")),
}
FORMATS: tuple[str, ...] = tuple(_PARSERS)


def detect_format(record: Any) -> str:
    """The first format (of ``FORMATS``) whose identifying keys the decoded ``record`` has."""
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}", _ONE_OBJECT)
    for name, (_, keys) in _PARSERS.items():
        if all(k in record for k in keys):
            return name
    formats = "; ".join(f"{name} has {', '.join(keys)}" for name, (_, keys) in _PARSERS.items())
    raise InputError(f"cannot tell the format from the record's keys {sorted(record)}",
                     f"pass the format explicitly, or use the keys of one: {formats}")


# --- the one place that reads a file and attaches path:line -----------------------------------------

def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found",
                         "check the path; relative paths start at the current folder") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a file", "name the requests file inside it") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}", "check the file's permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte offset {e.start}: {e.reason})",
                         "save the file as UTF-8") from None


def _json_error(path: str, line: int, e: ValueError | RecursionError) -> InputError:
    detail = f"at column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else "(nested too deeply)"
    return InputError(f"{path}:{line}: invalid JSON {detail}",
                      "write each record as one JSON object on one line; check quotes, commas and braces")


def _jsonl_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    # split on "\n" only: str.splitlines also splits on U+2028 and others, legal inside JSON strings
    for line_no, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if line and not line.startswith(("#", "//")):
            try:
                yield line_no, json.loads(line)
            except (ValueError, RecursionError) as e:
                raise _json_error(path, line_no, e) from None


def _array_records(text: str, path: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    skip = re.compile(r"[ \t\r\n]*")
    line, counted = 1, 0

    def line_of(pos: int) -> int:  # positions only grow: count newlines since the last call
        nonlocal line, counted
        line, counted = line + text.count("\n", counted, pos), pos
        return line

    pos = skip.match(text, text.index("[") + 1).end()
    while not text.startswith("]", pos):
        try:
            record, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise _json_error(path, e.lineno, e) from None
        except RecursionError as e:
            raise _json_error(path, line_of(pos), e) from None
        yield line_of(pos), record
        pos = skip.match(text, end).end()
        if text.startswith(",", pos):
            pos = skip.match(text, pos + 1).end()
        elif not text.startswith("]", pos):
            raise InputError(f"{path}:{line_of(pos)}: invalid JSON array: expected ',' or ']'", _ONE_ARRAY)
    if (pos := skip.match(text, pos + 1).end()) < len(text):
        raise InputError(f"{path}:{line_of(pos)}: invalid JSON: extra data after the array", _ONE_ARRAY)


def _records(path: str) -> Iterator[tuple[int, Any]]:
    """(1-based line, decoded JSON value) for each record of a JSONL file or a JSON array file."""
    text = _read_text(path)
    return (_array_records if text.lstrip().startswith("[") else _jsonl_records)(text, path)


def load_requests(path: str | os.PathLike[str], format: str = "auto", *,
                  limit: int | None = None, offset: int = 0) -> list[EditRequest]:
    """Records ``offset .. offset+limit-1`` (0-based; all from ``offset`` if ``limit`` is None).

    ``format`` is one of ``FORMATS`` or "auto" (detected from the keys of the file's first record).
    Records before ``offset`` are only decoded; reading stops after the last record asked for.
    Raises ``InputError`` naming path:line for a missing or unreadable file, invalid UTF-8 or JSON,
    a record that is not an object or lacks a field, an unknown facts field, an empty target, a
    subject not in its prompt, a template without exactly one "{}", a repeated id, a file with no
    records, or an offset past its end.
    """
    path = os.fspath(path)
    if format != "auto" and format not in _PARSERS:
        raise InputError(f"unknown requests format {format!r}", f"use one of: auto, {', '.join(FORMATS)}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InputError(f"offset must be a non-negative integer, got {offset!r}", "pass an offset of 0 or more")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer, got {limit!r}", "pass a limit of 1 or more, or none")
    requests: list[EditRequest] = []
    first_seen: dict[str, str] = {}
    count = 0
    for line_no, record in _records(path):
        source = f"{path}:{line_no}"
        try:
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, got {type(record).__name__}", _ONE_OBJECT)
            format = detect_format(record) if format == "auto" else format
            if count >= offset:
                request = _PARSERS[format][0](record, source)
                if request.request_id in first_seen:
                    raise InputError(f"id {request.request_id!r} repeats the one at {first_seen[request.request_id]}",
                                     "give each record its own id")
                first_seen[request.request_id] = source
                requests.append(request)
        except InputError as e:
            raise InputError(f"{source}: {e.message}", e.hint) from None
        count += 1
        if limit is not None and len(requests) == limit:
            break
    if count == 0:
        raise InputError(f"{path}: no records (the file is empty, or holds only blank lines and comments)",
                         f"write one JSON object per line; see {_FORMAT_DOC} and examples/facts.jsonl")
    if not requests:
        raise InputError(f"offset {offset} is past the last record ({path} has {count})",
                         f"pass an offset below {count}")
    return requests
