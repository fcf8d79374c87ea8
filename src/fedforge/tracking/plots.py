"""Matplotlib figures (written as PNG, headless)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

TITLE_CHARS_PER_INCH = 9  # about what a 12 pt title fits per inch of figure width


def fitted_title(ax, fig, title: str) -> None:
    """Set a title wrapped to the figure's width, so a long one never runs off the image."""
    width = int(fig.get_figwidth() * TITLE_CHARS_PER_INCH)
    ax.set_title(textwrap.fill(title, width=max(20, width)))


def partition_heatmap(hist: np.ndarray, path: str | Path, title: str = "") -> None:
    """Clients x classes sample counts as a heat map with a colour bar."""
    plt = _pyplot()
    clients, classes = hist.shape
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * classes + 2), max(3, 0.25 * clients + 1.5)))
    image = ax.imshow(hist, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("class")
    ax.set_ylabel("client")
    fitted_title(ax, fig, title or "samples per client and class")
    if classes <= 20:
        ax.set_xticks(range(classes))
    fig.colorbar(image, ax=ax, label="samples")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series_colors(labels: list[str]) -> dict[str, str]:
    """One colour per run label, the same in every figure of a report."""
    palette = [f"C{i}" for i in range(10)]
    return {m: palette[i % 10] for i, m in enumerate(dict.fromkeys(labels))}


def line_plot(
    series: list[tuple[str, str, list[float], list[float]]],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    integer_x: bool = False,
) -> None:
    """Curves (label, method, xs, ys), one colour per label, with a legend of the labels."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    colors = series_colors([label for label, _, _, _ in series])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, _, xs, ys in series:
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, color=colors[label], label=label)
    fitted_title(ax, fig, title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def distribution_plot(groups: list[tuple[str, str, list[float]]], path: str | Path, title: str, ylabel: str) -> None:
    """Box plot per (label, method) group with the individual values overlaid."""
    plt = _pyplot()
    colors = series_colors([label for label, _, _ in groups])
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 2), 4.5))
    data = [values for _, _, values in groups]
    ax.boxplot(data, showfliers=False)
    for i, (label, _, values) in enumerate(groups, start=1):
        jitter = np.linspace(-0.12, 0.12, num=len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i + jitter, values, s=14, color=colors[label], alpha=0.8, zorder=3)
    ax.set_xticks(range(1, len(groups) + 1), [textwrap.fill(label, 16) for label, _, _ in groups], fontsize=8)
    fitted_title(ax, fig, title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
