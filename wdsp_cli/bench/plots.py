"""Curves of editing quality against the iteration, like the paper's figures 3 and 4.

Public API:
    plot_curves(series, path, title="", panels=PANELS, columns=None) -> Path
        series: {label: [(iteration, {"efficacy": .., "generalization": .., "locality": .., "score": ..}), ...]}
    HEALTH_PANELS   the panels of the health figures (a row's ``health`` flattened: perplexity_ratio, ...)

One panel per metric (efficacy, generalisation, locality, Score), one line per label; written
as PNG with matplotlib's Agg backend (no display needed). matplotlib is imported here only.
"""

from __future__ import annotations

from pathlib import Path

PANELS = (("efficacy", "Efficacy"), ("generalization", "Generalisation"), ("locality", "Locality"), ("score", "Score"))
HEALTH_PANELS = (("perplexity_ratio", "Perplexity / base"), ("locality_prompts", "Unrelated prompts = base (%)"),
                 ("max_relative_frobenius", "max ||W - W0|| / ||W0||"), ("max_spectral_ratio", "max sigma / sigma0"))
_PERCENT = {"efficacy", "generalization", "locality", "score", "retention", "locality_prompts"}


def plot_curves(series: dict[str, list[tuple[int, dict]]], path: str | Path, title: str = "",
                panels=PANELS, columns: int | None = None) -> Path:
    """One panel per (key, name) of ``panels``, ``columns`` to a row (default: all in one row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    columns = min(columns or len(panels), len(panels))
    rows = -(-len(panels) // columns)
    fig, grid = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), sharex=True, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, (key, name) in zip(axes, panels):
        for label, points in series.items():
            xs = [t for t, m in points if m.get(key) is not None]
            ys = [m[key] for t, m in points if m.get(key) is not None]
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        if key in _PERCENT:
            ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    if panels[0][0] in _PERCENT:
        axes[0].set_ylabel("%")
    axes[len(panels) - 1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
