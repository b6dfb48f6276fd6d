"""Plots of a monitored run (PNG, matplotlib's Agg backend): one panel per family of measures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

Series = dict[str, tuple[np.ndarray, np.ndarray]]

# panel title, log scale, which measures: first match wins
PANELS = (
    ("loss", True, lambda m: m.endswith("loss")),
    ("accuracy", False, lambda m: m.endswith("acc") or m.startswith("probe/")),
    ("weight norm", False, lambda m: m.startswith("weight_norm/")),
    ("gradient norm", True, lambda m: m.startswith("grad_norm/")),
    ("relative update size", True, lambda m: m.startswith("update/")),
    ("effective rank", False, lambda m: m.startswith("act/") and m.endswith("/rank")),
    ("other measures", False, lambda m: not m.startswith("act/")),
)
MAX_LINES = 8


def panels(series: Series) -> dict[str, tuple[bool, list[str]]]:
    """Assign each measure to the first panel that takes it; drop empty panels."""
    out: dict[str, tuple[bool, list[str]]] = {}
    for name in sorted(series):
        for title, log, takes in PANELS:
            if takes(name):
                out.setdefault(title, (log, []))[1].append(name)
                break
    return out


def _ranked(names: list[str], series: Series) -> list[str]:
    """Totals first, then the measures with the largest values (a panel shows at most 8 lines)."""
    total = [n for n in names if n.endswith("/total")]
    rest = sorted((n for n in names if n not in total), key=lambda n: -float(np.nanmax(np.abs(series[n][1]))))
    return (total + rest)[:MAX_LINES]


def plot_run(series: Series, path: Path, title: str = "") -> Path:
    """Save a grid of panels (loss, accuracy, norms, updates, rank, custom) for one run."""
    groups = panels(series)
    cols = 2 if len(groups) > 1 else 1
    rows = (len(groups) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (panel, (log, names)) in zip(axes.flat, groups.items()):
        for name in _ranked(names, series):
            steps, values = series[name]
            ax.plot(steps, values, label=name, lw=2.0 if name.endswith("/total") else 1.2)
        if log and all(np.nanmin(series[n][1]) > 0 for n in names):
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_frequencies(norms: np.ndarray, keys: list[int], path: Path, title: str = "") -> Path:
    """Bar chart of an embedding's Fourier norm per frequency, key frequencies highlighted."""
    fig, ax = plt.subplots(figsize=(6, 2.4))
    freqs = np.arange(1, len(norms) + 1)
    ax.bar(freqs, norms, color=["tab:red" if k in keys else "tab:gray" for k in freqs])
    ax.set_xlabel("frequency k", fontsize=8)
    ax.set_ylabel("embedding norm", fontsize=8)
    ax.set_title(title or f"key frequencies {keys}", fontsize=9)
    ax.tick_params(labelsize=7)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    """Write a figure as a small PNG and free it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path
