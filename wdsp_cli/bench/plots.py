"""Curves of editing quality against the iteration, like the paper's figures 3 and 4.

Public API:
    plot_curves(series, path, title="") -> Path
        series: {label: [(iteration, {"efficacy": .., "generalization": .., "locality": .., "score": ..}), ...]}

One panel per metric (efficacy, generalisation, locality, Score), one line per label; written
as PNG with matplotlib's Agg backend (no display needed). matplotlib is imported here only.
"""

from __future__ import annotations

from pathlib import Path

PANELS = (("efficacy", "Efficacy"), ("generalization", "Generalisation"), ("locality", "Locality"), ("score", "Score"))


def plot_curves(series: dict[str, list[tuple[int, dict]]], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.4), sharex=True)
    for ax, (key, name) in zip(axes, PANELS):
        for label, points in series.items():
            xs = [t for t, m in points if m.get(key) is not None]
            ys = [m[key] for t, m in points if m.get(key) is not None]
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[-1].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
