"""Truth and output timelines of one conversation, one above the other, as a PNG."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from vggvox.eval.timeline import UNKNOWN, Labelled, output_label, truth_label
from vggvox.recording.rttm import Segment

_GREY = "#9e9e9e"


def _spans(items: Iterable[tuple[float, float, str]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for start, end, label in items:
        out.setdefault(label, []).append((start, end - start))
    return out


def plot_timelines(
    truth: Sequence[Segment],
    turns: Sequence[Labelled],
    path: str | Path,
    title: str,
    enrolled: set[str] | frozenset[str] | None = None,
) -> None:
    """Draw the truth row above the output row, one colour per name.

    The same name has the same colour in both rows so that a wrong label shows
    as a colour change; ``unknown`` is grey and uncovered time blank. With
    ``enrolled`` the truth row shows strangers as ``unknown``, as they are scored.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    ref = _spans((s.start, s.end, s.speaker if enrolled is None
                  else truth_label(s.speaker, enrolled)) for s in truth)
    hyp = _spans((t.start, t.end, output_label(t.label)) for t in turns)
    names = sorted((set(ref) | set(hyp)) - {UNKNOWN})
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colours = {n: to_rgba(cmap(i % cmap.N)) for i, n in enumerate(names)}
    colours[UNKNOWN] = to_rgba(_GREY)

    end = max([s.end for s in truth] + [t.end for t in turns] + [1.0])
    fig, ax = plt.subplots(figsize=(max(8.0, min(18.0, end / 10)), 3.0))
    for y, spans in ((1, ref), (0, hyp)):
        for label, xr in spans.items():
            ax.broken_barh(xr, (y - 0.35, 0.7), facecolors=colours[label], edgecolor="none")
    ax.set_yticks([1, 0], ["truth", "output"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    shown = [*names, UNKNOWN] if UNKNOWN in ref or UNKNOWN in hyp else names
    ax.legend(handles=[Patch(color=colours[n], label=n) for n in shown],
              loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
