"""Unit tests for wdsp_cli.data.requests: the real dataset files, every error case, properties."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wdsp_cli.data.requests import (
    FORMATS,
    EditRequest,
    LocalityProbe,
    detect_format,
    load_requests,
)
from wdsp_cli.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
CF = DATA / "counterfact"
ZSRE = DATA / "zsre" / "zsre_mend.jsonl"

FACT = {"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux", "target": "English"}


def data_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data file not found: {path} (the datasets live in ../shared/data)")
    return path


def write(tmp_path: Path, *lines: str | dict, name: str = "facts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n", encoding="utf-8")
    return path


def error_of(path: Path, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        load_requests(path, **kwargs)
    return info.value


def assert_located(err: InputError, path: Path, line: int) -> None:
    assert err.message.startswith(f"{path}:{line}: "), err.message
    assert err.hint, "every input error carries a hint"


# --- the real files -------------------------------------------------------------------------------

def test_counterfact_rome_first_record():
    path = data_file(CF / "counterfact_rome.jsonl")
    first, second = load_requests(path, limit=2)
    assert detect_format(json.loads(path.open(encoding="utf-8").readline())) == "counterfact-rome"
    assert (first.prompt, first.subject, first.target_new, first.target_true) == \
        ("{}, created by", "Porsche 911", "Honda", "Porsche")
    assert first.rewrite_prompt == "Porsche 911, created by"
    assert first.request_id == "18" and first.protocol == "counterfact"
    assert len(first.paraphrases) == 2 and first.paraphrases[1].endswith("Porsche 911, developed by")
    assert len(first.neighbours) == 10
    assert first.neighbours[0] == LocalityProbe("Porsche RS Spyder is produced by", "Porsche")
    assert first.source == f"{path}:1" and second.source == f"{path}:2"


def test_counterfact_easyedit_first_records_and_offset():
    path = data_file(CF / "counterfact_easyedit.part1.jsonl")
    (first,) = load_requests(path, format="counterfact-easyedit", limit=1)
    assert first == EditRequest(
        prompt="The mother tongue of {} is", subject="Danielle Darrieux", target_new="English",
        target_true="French", paraphrases=("Where Danielle Darrieux is from, people speak the language of",),
        neighbours=(LocalityProbe("Michel Rocard is a native speaker of", "French"),),
        request_id="0", source=f"{path}:1", protocol="counterfact")
    window = load_requests(path, offset=5, limit=3)
    assert [r.source for r in window] == [f"{path}:{n}" for n in (6, 7, 8)]
    assert [r.request_id for r in window] == [str(json.loads(line)["case_id"])
                                              for line in path.read_text(encoding="utf-8").splitlines()[5:8]]


def test_rome_and_easyedit_agree_on_shared_case():
    rome = load_requests(data_file(CF / "counterfact_rome.jsonl"), limit=1)[0]
    shard = next(p for p in sorted(CF.glob("counterfact_easyedit.part*.jsonl"))
                 if f'"case_id": {rome.request_id},' in p.read_text(encoding="utf-8"))
    easy = next(r for r in load_requests(shard) if r.request_id == rome.request_id)
    assert (easy.prompt, easy.subject, easy.target_new, easy.target_true) == \
        (rome.prompt, rome.subject, rome.target_new, rome.target_true)


def test_zsre_mend_first_record():
    path = data_file(ZSRE)
    (first,) = load_requests(path, limit=1)
    assert first.prompt == "When was the inception of {}?"
    assert first.subject == "IAAF Combined Events Challenge"
    assert first.target_new == "1998" and first.target_true is None
    assert first.paraphrases == ("When was the IAAF Combined Events Challenge launched?",)
    assert first.neighbours == (LocalityProbe("nq question: what is the name of the last episode of spongebob?",
                                              "The String"),)
    assert (first.request_id, first.protocol) == ("line 1", "zsre")


@pytest.mark.parametrize("name", ["counterfact/counterfact_rome.jsonl", "zsre/zsre_mend.jsonl"])
def test_whole_real_files_load(name):
    requests = load_requests(data_file(DATA / name))
    assert len(requests) == sum(1 for line in (DATA / name).open(encoding="utf-8") if line.strip())
    assert all(r.rewrite_prompt.count(r.subject) >= 1 for r in requests)


def test_example_facts_file_loads():
    requests = load_requests(ROOT / "examples" / "facts.jsonl")
    assert len(requests) >= 10
    assert all(r.target_true and r.paraphrases and r.neighbours and r.protocol == "facts" for r in requests)
    edited = {r.rewrite_prompt for r in requests}
    assert not edited & {n.prompt for r in requests for n in r.neighbours}, "a neighbour is edited in the file"


# --- the facts format -----------------------------------------------------------------------------

def test_facts_full_record_with_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "# a comment", "", "   // another comment", {
        **FACT, "target": " English ", "old_target": "French", "id": "dd-lang",
        "paraphrases": ["Danielle Darrieux grew up speaking", "{} speaks"],
        "neighbours": [{"prompt": "The mother tongue of Léon Blum is", "answer": " French"}]}, "  ")
    (request,) = load_requests(path)
    assert request == EditRequest(
        prompt="The mother tongue of {} is", subject="Danielle Darrieux", target_new="English", target_true="French",
        paraphrases=("Danielle Darrieux grew up speaking", "Danielle Darrieux speaks"),
        neighbours=(LocalityProbe("The mother tongue of Léon Blum is", "French"),),
        request_id="dd-lang", source=f"{path}:4", protocol="facts")


def test_facts_template_first_occurrence_and_other_braces(tmp_path):
    path = write(tmp_path, {"prompt": "Paris {x} Paris is", "subject": "Paris", "target": "big"},
                 {"prompt": "{} {{not a slot}} is in", "subject": "Rome", "target": "Italy", "id": 7})
    first, second = load_requests(path)
    assert first.prompt == "{} {x} Paris is" and first.rewrite_prompt == "Paris {x} Paris is"
    assert first.request_id == "line 1"
    assert second.rewrite_prompt == "Rome {{not a slot}} is in" and second.request_id == "7"


def test_auto_detection(tmp_path):
    assert detect_format(FACT) == "facts"
    assert detect_format({"requested_rewrite": {}}) == "counterfact-rome"
    easyedit = {"prompt": "x", "subject": "x", "target_new": "y", "ground_truth": "z"}
    assert detect_format(easyedit) == "counterfact-easyedit"
    assert detect_format({"src": "x?", "subject": "x", "answers": ["y"]}) == "zsre-mend"
    err = error_of(write(tmp_path, {"question": "x", "answer": "y"}))
    assert_located(err, tmp_path / "facts.jsonl", 1)
    assert "answer" in err.message and "question" in err.message
    assert all(name in err.hint for name in FORMATS) and "requested_rewrite" in err.hint and "src" in err.hint


def test_explicit_format_reports_missing_field_instead_of_guessing(tmp_path):
    path = write(tmp_path, FACT)
    err = error_of(path, format="zsre-mend")
    assert_located(err, path, 1)
    assert "missing field 'src'" in err.message


def test_json_array_file_with_line_numbers(tmp_path):
    records = [FACT, {**FACT, "id": "b", "target": "German"}]
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(records, indent=2), encoding="utf-8")
    first, second = load_requests(path)
    assert (first.target_new, second.target_new) == ("English", "German")
    assert first.source == f"{path}:2" and second.source == f"{path}:7"
    path.write_text("[\n" + json.dumps(FACT) + ",\n" + json.dumps({**FACT, "target": ""}) + "\n]", encoding="utf-8")
    assert_located(error_of(path), path, 3)


@pytest.mark.parametrize("text, line", [
    ('[{F},\n {"b": }]', 2),       # invalid element
    ('[{F}\n {F}]', 2),            # missing comma
    ('[{F}]\nextra', 2),           # data after the array
    ('[\n{F},', 2),                # unterminated
    ('[\n{F}', 2),                 # unterminated
])
def test_json_array_syntax_errors(tmp_path, text, line):
    path = tmp_path / "bad.json"
    path.write_text(text.replace("{F}", json.dumps(FACT)), encoding="utf-8")
    err = error_of(path)
    assert_located(err, path, line)
    assert "JSON" in err.message


def test_limit_and_offset(tmp_path):
    path = write(tmp_path, *({**FACT, "id": str(i)} for i in range(5)))
    assert [r.request_id for r in load_requests(path, offset=1, limit=2)] == ["1", "2"]
    assert [r.request_id for r in load_requests(path, offset=3)] == ["3", "4"]
    assert [r.request_id for r in load_requests(path, limit=10)] == [str(i) for i in range(5)]
    assert "past the last record" in error_of(path, offset=5).message
    for bad in ({"limit": 0}, {"offset": -1}, {"limit": True}, {"format": "rome"}):
        error_of(path, **bad)


def test_limit_stops_reading_before_a_later_broken_line(tmp_path):
    path = write(tmp_path, FACT, "{broken")
    assert len(load_requests(path, limit=1)) == 1
    assert_located(error_of(path), path, 2)


def test_raw_line_separator_inside_a_json_string_is_not_a_line_break(tmp_path):
    path = tmp_path / "facts.jsonl"
    record = {**FACT, "paraphrases": ["Danielle Darrieux\u2028speaks"]}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n" + json.dumps(FACT), encoding="utf-8")
    first, second = load_requests(path)
    assert first.paraphrases == ("Danielle Darrieux\u2028speaks",) and second.source == f"{path}:2"


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(FACT).encode())
    assert load_requests(path)[0].target_new == "English"


# --- every error case names the file and the line -------------------------------------------------

BAD_RECORDS = [
    ({**FACT, "target": ""}, "field 'target' is empty"),
    ({**FACT, "target": "   "}, "field 'target' is empty"),
    ({"prompt": FACT["prompt"], "subject": FACT["subject"]}, "missing field 'target'"),
    ({"prompt": FACT["prompt"], "target": "x"}, "missing field 'subject'"),
    ({**FACT, "subject": "Darrieux Danielle"}, "does not occur in prompt"),
    ({**FACT, "subject": "danielle darrieux"}, "does not occur in prompt"),
    ({**FACT, "prompt": "{} and {} are"}, "found 2"),
    ({**FACT, "traget": "English"}, "unknown field 'traget' (did you mean 'target'?)"),
    ({**FACT, "target": 3}, "field 'target' must be a string"),
    ({**FACT, "old_target": ""}, "field 'old_target' is empty"),
    ({**FACT, "paraphrases": [1]}, "'paraphrases' must be a string or a list of strings"),
    ({**FACT, "neighbours": ["The capital of Germany is"]}, "'neighbours' must be a list of objects"),
    ({**FACT, "neighbours": [{"prompt": "The capital of Germany is", "answer": ""}]}, "field 'answer' is empty"),
    ({**FACT, "neighbours": [{"prompt": "The capital of {} is", "answer": "Berlin"}]}, "neighbour prompt"),
    ({**FACT, "id": ["x"]}, "field 'id'"),
]


@pytest.mark.parametrize("record, expected", BAD_RECORDS, ids=[e for _, e in BAD_RECORDS])
def test_bad_facts_record(tmp_path, record, expected):
    path = write(tmp_path, "# header", FACT | {"id": "ok"}, record)
    err = error_of(path)
    assert_located(err, path, 3)
    assert expected in err.message


@pytest.mark.parametrize("line, expected", [
    ('{"prompt": "x is", "subject": "x", "target": "y",}', "invalid JSON at column 50"),
    ('{"prompt": "x is"', "invalid JSON at column"),
    ('["prompt", "subject", "target"]', "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ('{"a": ' * 100_000, "invalid JSON"),
])
def test_bad_json_lines(tmp_path, line, expected):
    path = write(tmp_path, FACT, line)
    err = error_of(path)
    assert_located(err, path, 2)
    assert expected in err.message


def test_duplicate_id(tmp_path):
    path = write(tmp_path, {**FACT, "id": "a"}, {**FACT, "id": "a"})
    err = error_of(path)
    assert_located(err, path, 2)
    assert f"{path}:1" in err.message


def test_dataset_record_errors(tmp_path):
    rewrite = {"prompt": "{} is", "subject": "x", "target_new": {"str": ""}, "target_true": {"str": "z"}}
    rome = write(tmp_path, {"case_id": 1, "requested_rewrite": rewrite}, name="rome.jsonl")
    assert "field 'str' is empty" in error_of(rome).message
    easy = {"case_id": 1, "prompt": "Paris is in", "subject": "Rome", "target_new": "Spain", "ground_truth": "France"}
    path = write(tmp_path, easy, name="easy.jsonl")
    assert_located(err := error_of(path), path, 1)
    assert "does not occur" in err.message
    zsre = {"subject": "x", "src": "What is x?", "answers": [], "rephrase": "x?",
            "loc": "nq question: q", "loc_ans": "a"}
    path = write(tmp_path, zsre, name="zsre.jsonl")
    assert_located(err := error_of(path), path, 1)
    assert "field 'answers' is empty" in err.message


def test_dataset_subject_matches_ignoring_case(tmp_path):
    zsre = {"subject": "Hoover Dam", "src": "What type of dam is hoover dam?", "answers": ["arch-gravity dam"],
            "rephrase": "Hoover Dam is what kind of dam?",
            "loc": "nq question: who wrote hamlet", "loc_ans": "Shakespeare"}
    (request,) = load_requests(write(tmp_path, zsre))
    assert request.prompt == "What type of dam is {}?"
    assert request.neighbours[0].prompt == "nq question: who wrote hamlet?"


def test_easyedit_list_fields(tmp_path):
    record = {"prompt": "The capital of France is", "subject": "France", "target_new": ["Rome"],
              "ground_truth": "Paris",
              "rephrase_prompt": ["France's capital is", "The French capital is"],
              "locality_prompt": ["The capital of Spain is"], "locality_ground_truth": ["Madrid"]}
    (request,) = load_requests(write(tmp_path, record))
    assert request.target_new == "Rome" and len(request.paraphrases) == 2
    assert request.neighbours == (LocalityProbe("The capital of Spain is", "Madrid"),)
    path = write(tmp_path, {**record, "locality_ground_truth": []})
    assert "locality_ground_truth" in error_of(path).message


def test_file_level_errors(tmp_path):
    missing = tmp_path / "nope.jsonl"
    err = error_of(missing)
    assert str(missing) in err.message and "not found" in err.message and err.hint
    assert "folder" in error_of(tmp_path).message
    for text in ("", "\n\n", "# only a comment\n// and another\n", "[]"):
        path = tmp_path / "empty.jsonl"
        path.write_text(text, encoding="utf-8")
        err = error_of(path)
        assert err.message.startswith(f"{path}: no records") and err.hint


def test_invalid_utf8_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(FACT).encode() + b"\n" + '{"prompt": "Léon"}'.encode("latin-1"))
    err = error_of(path)
    offset = len(json.dumps(FACT).encode()) + 1 + len('{"prompt": "L')
    assert_located(err, path, 2)
    assert f"byte offset {offset}" in err.message and "UTF-8" in err.hint


# --- EditRequest and LocalityProbe on their own ---------------------------------------------------

def test_edit_request_validation():
    request = EditRequest("The capital of {} is", "France", " Rome ", target_true="Paris ",
                          paraphrases=["France's capital is"])
    assert request.target_new == "Rome" and request.target_true == "Paris"
    assert request.paraphrases == ("France's capital is",) and hash(request)
    assert request.rewrite_prompt == "The capital of France is"
    for kwargs in ({"prompt": "The capital of France is"}, {"prompt": "{} {}"}, {"subject": " "},
                   {"target_new": ""}, {"target_true": " "}, {"paraphrases": ("{} capital",)}, {"protocol": "x"},
                   {"neighbours": ("The capital of Spain is",)}):
        with pytest.raises(InputError):
            EditRequest(**{"prompt": "The capital of {} is", "subject": "France", "target_new": "Rome", **kwargs})
    with pytest.raises(InputError):
        LocalityProbe("The capital of Spain is", "  ")


# --- properties -----------------------------------------------------------------------------------

no_slot = st.text(min_size=1, max_size=30).filter(lambda s: "{}" not in s and s.strip())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=no_slot, target=no_slot, before=st.text(max_size=20), after=st.text(max_size=20),
       ascii_only=st.booleans())
def test_facts_round_trip(tmp_path, subject, target, before, after, ascii_only):
    prompt = before + subject + after
    if "{}" in prompt:
        return
    path = tmp_path / "prop.jsonl"
    record = {"prompt": prompt, "subject": subject, "target": target,
              "neighbours": [{"prompt": "N is", "answer": target}]}
    path.write_text(json.dumps(record, ensure_ascii=ascii_only) + "\n", encoding="utf-8")
    (request,) = load_requests(path)
    assert request.rewrite_prompt == prompt
    assert request.subject == subject and request.prompt.count("{}") == 1
    assert request.target_new == target.strip() == request.neighbours[0].answer
    assert request.source == f"{path}:1"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_bytes_give_requests_or_input_error(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        with pytest.raises(InputError, match=re.escape(str(path)) + r":\d+: not valid UTF-8"):
            load_requests(path)
        return
    try:
        requests = load_requests(path)
    except InputError as err:
        assert err.message.startswith(str(path)) and err.hint
    else:
        assert requests and text.strip()


class _CountingTokenizer:
    """One token per character; records what it was asked to tokenize."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen += list(texts)
        return {"input_ids": [list(range(len(t))) for t in texts]}


def test_prompt_lengths_name_the_record_and_tokenize_only_what_might_not_fit():
    from wdsp_cli.data.prompt_lengths import check_prompt_lengths, request_texts
    from wdsp_cli.data.requests import EditRequest, LocalityProbe

    short = EditRequest("The capital of {} is", "France", "Berlin", "Paris", ("Say: the capital of France is",),
                        (LocalityProbe("The capital of Spain is", "Madrid"),), "a", "facts.jsonl:1")
    assert [what for what, _ in request_texts(short)] == ["prompt + target", "prompt + old target",
                                                         "paraphrase 1 + target", "neighbour 1 + answer"]
    tokenizer = _CountingTokenizer()
    check_prompt_lengths([short] * 1000, tokenizer, context=256, prefix_tokens=14)
    assert tokenizer.seen == []  # every text is under the byte bound: nothing tokenized
    long = EditRequest("The capital of {} is", "France", "Berlin", paraphrases=("x " * 150 + "is",),
                       request_id="b", source="facts.jsonl:2")
    with pytest.raises(InputError, match=r"facts.jsonl:2: the paraphrase 1 \+ target is 309 tokens, but the model "
                                         r"reads at most 400 \(100 of them go to the context template"):
        check_prompt_lengths([short, long, long], _CountingTokenizer(), context=400, prefix_tokens=100)
    check_prompt_lengths([long], _CountingTokenizer(), context=409, prefix_tokens=100)  # exactly fits
