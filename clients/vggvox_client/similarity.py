"""The similarity matrix of a few utterances, as a table and a heat map."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def format_table(names: list[str], matrix: np.ndarray) -> str:
    width = max(6, *(len(n) for n in names))
    lines = [" " * width + " " + " ".join(f"{i + 1:>6d}" for i in range(len(names)))]
    for i, (n, row) in enumerate(zip(names, matrix, strict=True)):
        lines.append(f"{n:>{width}s} " + " ".join(f"{v:6.3f}" for v in row) + f"  [{i + 1}]")
    return "\n".join(lines)


def plot_heatmap(names: list[str], matrix: np.ndarray, path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2 + 0.5 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if matrix[i, j] < matrix.max() * 0.8 else "k")
    fig.colorbar(im, ax=ax, label=f"{metric} score")
    ax.set_title("speaker similarity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
