"""Health of an edited model beyond its edits: fluency on held-out text and the growth of the edited
matrices, the signals the collapse analyses trace collapse to (issue 16; literature.md).

Public API:
    perplexity(model, tokenizer, texts, seq_len=256, batch_size=8) -> (ppl, tokens)
    spectral_norm(W, iterations=50, seed=0) -> sigma_max(W) estimate (power iteration)
    weight_drift(W_t, W_0, iterations=50) -> {"relative_frobenius", "spectral_ratio", "spectral_t", "spectral_0"}

perplexity: each text is tokenized (the tokenizer's special tokens included) and cut into windows of
at most ``seq_len`` tokens; every token after a window's first is predicted from the tokens before it
in its window, and ppl = exp(sum of -log p / number of predicted tokens).

weight_drift, for one edited matrix W_0 -> W_t (float64):
    relative_frobenius = ||W_t - W_0||_F / ||W_0||_F
    spectral_ratio     = sigma_max(W_t) / sigma_max(W_0)
with sigma_max by power iteration on W^T W from a seeded start (deterministic; it converges from below,
so it never overstates the norm).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def perplexity(model, tokenizer, texts: Iterable[str], seq_len: int = 256, batch_size: int = 8) -> tuple[float, int]:
    """(exp of the mean next-token NLL over ``texts``, the number of predicted tokens)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    windows = []
    for text in texts:
        ids = tokenizer(text).input_ids
        windows += [ids[i : i + seq_len] for i in range(0, len(ids), seq_len) if len(ids[i : i + seq_len]) > 1]
    windows.sort(key=len)
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        width = max(len(w) for w in group)
        ids = torch.full((len(group), width), pad, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, window in enumerate(group):
            ids[row, : len(window)] = torch.tensor(window)
            mask[row, : len(window)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(logp.device)
        nll = -logp.gather(-1, targets[..., None])[..., 0]
        keep = mask[:, 1:].to(nll.device).bool()
        total += float(nll[keep].double().sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no text of two tokens or more to measure perplexity on")
    return float(torch.exp(torch.tensor(total / count, dtype=torch.float64))), count


def spectral_norm(W: torch.Tensor, iterations: int = 50, seed: int = 0) -> float:
    """sigma_max(W) for W [m, n] by ``iterations`` steps of power iteration on W^T W (float64)."""
    A = W.detach().double()
    v = torch.randn(A.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(A.device)
    v = v / v.norm()
    sigma = 0.0
    for _ in range(iterations):
        u = A @ v
        sigma = float(u.norm())
        if sigma == 0.0:
            return 0.0
        v = A.T @ (u / sigma)
        v = v / v.norm()
    return float((A @ v).norm())


def weight_drift(W_t: torch.Tensor, W_0: torch.Tensor, iterations: int = 50) -> dict[str, float]:
    """How far an edited matrix has moved from the base one (see the module docstring)."""
    if W_t.shape != W_0.shape:
        raise ValueError(f"shapes differ: {tuple(W_t.shape)} and {tuple(W_0.shape)}")
    base, now = W_0.detach().double(), W_t.detach().double()
    s0, st = spectral_norm(base, iterations), spectral_norm(now, iterations)
    return {"relative_frobenius": float((now - base).norm() / base.norm()),
            "spectral_ratio": st / s0 if s0 else float("inf"), "spectral_t": st, "spectral_0": s0}
