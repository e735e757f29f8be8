"""AlphaEdit: the projected solve against its dense formula, the null-space projection's
properties, an edit that leaves preserved keys alone, and its per-iteration state in a
workspace (rollback and re-edit equal a fresh run)."""

from __future__ import annotations

import pytest
import torch
from workspace_helpers import make_model_dir, wdsp, write_corpus, write_facts

from wdsp_cli.errors import EditError
from wdsp_cli.methods.nullspace import key_moment, null_space_projection
from wdsp_cli.methods.solve import projected_update_factors


def test_projected_factors_equal_the_dense_formula():
    g = torch.Generator().manual_seed(0)
    d_in, d_out, b = 12, 7, 3
    R, K = torch.randn(b, d_out, generator=g, dtype=torch.float64), torch.randn(b, d_in, generator=g, dtype=torch.float64)
    X = torch.randn(40, d_in, generator=g, dtype=torch.float64)
    P, rank = null_space_projection(X.T @ X / 40 * torch.linspace(0.001, 2, d_in, dtype=torch.float64), 0.5)
    Kp = key_moment(torch.randn(5, d_in, generator=g, dtype=torch.float64))
    left, right = projected_update_factors(R, K, P, Kp, 10.0)
    Rc, Kc = R.T, K.T
    dense = Rc @ Kc.T @ P @ torch.linalg.inv(Kc @ Kc.T @ P + Kp @ P + 10.0 * torch.eye(d_in, dtype=torch.float64))
    torch.testing.assert_close(left @ right.T, dense, rtol=1e-9, atol=1e-12)


def test_projection_is_an_orthogonal_projector_onto_the_small_eigenvalues():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    s = torch.tensor([1e-4, 3e-3, 1e-2, 0.5, 1, 2, 3, 4], dtype=torch.float64)
    C = Q @ torch.diag(s) @ Q.T
    P, rank = null_space_projection(C, 2e-2)
    assert rank == 3
    torch.testing.assert_close(P @ P, P)
    torch.testing.assert_close(P, P.T)
    assert float(torch.linalg.matrix_norm(P @ C, ord=2)) < 2e-2
    with pytest.raises(EditError, match="null-space threshold"):
        null_space_projection(C, 1e-5)


def test_alphaedit_edit_leaves_the_preserved_keys_alone(tokenizer):
    from tiny_models import tiny_llama

    from wdsp_cli.config import EditConfig
    from wdsp_cli.data.requests import EditRequest
    from wdsp_cli.editing.batch import edit_batch
    from wdsp_cli.evaluation.scoring import score_targets
    from wdsp_cli.statistics.covariance import compute_covariance

    model = tiny_llama()
    texts = ["The capital of France is Paris. He is a musician.", "Apple was founded by Steve Jobs in London.",
             "The Louvre is a museum in Paris, France. They play the piano."] * 20
    stats = compute_covariance(model, tokenizer, [1, 2], texts, seq_len=32)
    moments = {l: s.second_moment for l, s in stats.items()}
    threshold = float(torch.linalg.eigvalsh(moments[2].double()).median())
    requests = [EditRequest("Paris is the capital of {}", "France", "Japan")]
    before, _ = score_targets(model, tokenizer, [r.rewrite_prompt for r in requests], ["Japan"])
    config = EditConfig(method="alphaedit", layers=(1, 2), v_num_grad_steps=15, clamp_norm_factor=1000.0,
                        v_weight_decay=0.0, nullspace_threshold=threshold, alphaedit_l2=1e-3)
    edit = edit_batch(model, tokenizer, requests, config, moments, ["{}"])
    after, _ = score_targets(model, tokenizer, [r.rewrite_prompt for r in requests], ["Japan"])
    assert float(after[0]) < float(before[0])
    update = edit.diff.updates[-1].dense().double()
    P, _ = null_space_projection(moments[2], threshold)
    # Delta = X P (push-through identity), so Delta P = Delta: up to the float32 storage of the factors
    assert float((update @ P - update).norm()) <= 1e-5 * float(update.norm())
    assert set(edit.keys) == {1, 2} and edit.keys[2].shape == (1, 128)


def test_rollback_and_re_edit_restore_the_accumulated_keys_exactly(tmp_path):
    model = make_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    facts, other = write_facts(tmp_path / "facts.jsonl", 6), tmp_path / "other.jsonl"
    other.write_text(facts.read_text().replace("Berlin", "Madrid").replace("London", "Tokyo"))



    common = ["--method", "alphaedit", "--steps", "4", "--nullspace-threshold", "1e3", "--alphaedit-l2", "1"]
    runs = {}
    for name in ("rolled", "fresh"):
        ws = tmp_path / name
        wdsp("init", "--model", model, "-w", ws)
        wdsp("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000)
        runs[name] = ws
    wdsp("edit", facts, "-w", runs["rolled"], "--batch-size", 2, *common)  # iterations 1-3
    wdsp("rollback", 1, "-w", runs["rolled"])
    wdsp("edit", other, "-w", runs["rolled"], "--batch-size", 4, "--offset", 2, *common)  # a new iteration 2
    wdsp("edit", facts, "-w", runs["fresh"], "--batch-size", 2, "--limit", 2, *common)
    wdsp("edit", other, "-w", runs["fresh"], "--batch-size", 4, "--offset", 2, *common)

    from wdsp_cli.jobs.edit import WorkspaceHistory
    from wdsp_cli.methods import method
    from wdsp_cli.workspace.checkout import checkout
    from wdsp_cli.workspace.store import Workspace

    a, b = Workspace.open(runs["rolled"]), Workspace.open(runs["fresh"])
    for t in (1, 2):
        assert all(torch.equal(a.keys(t)[l], b.keys(t)[l]) for l in (1, 2))
    config = a.config()
    moments = {l: torch.eye(128) for l in (1, 2)}
    pa, pb = (method("alphaedit").start(config, moments, WorkspaceHistory(w, 2)).previous for w in (a, b))
    assert all(torch.equal(pa[l], pb[l]) for l in (1, 2))
    wa, wb = checkout(a).model.state_dict(), checkout(b).model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
