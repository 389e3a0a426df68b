"""Closed-set identification: the VGGVox ``offline`` and ``batch_offline`` modes.

Enrollment utterances are embedded and stored as voiceprints (one normalised
mean per speaker) in a VoiceprintStore; each test utterance is scored against
every voiceprint at once.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from vggvox.cache import EmbeddingCache
from vggvox.lists import Utterance, read_utterances
from vggvox.metrics import identification_accuracy
from vggvox.modelcard import ModelCard, load_card
from vggvox.scoring import Scorer
from vggvox.store import VoiceprintStore
from vggvox_client.common import Skipped
from vggvox_client.jobs import Embedded, JobSettings, embed_files

TOP_N = 5


@dataclass(frozen=True)
class TestResult:
    path: Path
    speaker: str
    scores: np.ndarray
    """One score per enrolled speaker, in the order of Report.speakers."""
    top: list[tuple[str, float]]
    rank: int
    """1-based rank of the correct speaker."""


@dataclass
class Report:
    speakers: list[str]
    results: list[TestResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def accuracy(self) -> dict[str, float]:
        return identification_accuracy([r.rank for r in self.results], len(self.speakers))

    def summary(self) -> dict[str, object]:
        return {
            **self.accuracy,
            "n_speakers": len(self.speakers),
            "n_scored": len(self.results),
            "n_skipped": len(self.skipped),
            "skipped": [s.as_dict() for s in self.skipped],
        }


@dataclass(frozen=True)
class IdentifySettings:
    enroll_list: Path
    test_list: Path
    card_path: Path
    root: Path | None = None
    metric: str = "cosine"
    max_sec_enroll: float | None = None
    workers: int = 1
    cache_dir: Path | None = None
    store_path: Path | None = None
    """Keep the enrolled voiceprints here; a temporary store otherwise."""
    progress: bool = False


def _embed(
    utts: list[Utterance], s: IdentifySettings, card: ModelCard, max_seconds: float | None,
    label: str, tag: str, check_speech: bool = False,
) -> dict[Path, Embedded]:
    cache = EmbeddingCache(s.cache_dir, card.sha256, tag) if s.cache_dir else None
    return embed_files(
        [u.path for u in utts],
        JobSettings(s.card_path, max_seconds=max_seconds, check_speech=check_speech),
        workers=s.workers,
        cache=cache,
        progress=label if s.progress else "",
    )


def enroll_all(
    utts: list[Utterance], embedded: dict[Path, Embedded], store: VoiceprintStore, model: str
) -> list[Skipped]:
    """Enroll each speaker with their usable utterances, one transaction each."""
    skipped: list[Skipped] = []
    by_speaker: dict[str, list[Embedded]] = {u.speaker: [] for u in utts}
    for u in utts:
        e = embedded[u.path]
        if e.embedding is None:
            skipped.append(Skipped(str(u.path), e.reason, u.line))
        else:
            by_speaker[u.speaker].append(e)
    for name, items in by_speaker.items():
        if not items:
            skipped.append(Skipped(name, "speaker has no usable enrollment utterance"))
            continue
        store.enroll(
            name,
            np.stack([e.embedding for e in items]),
            model,
            [str(e.path) for e in items],
            [e.seconds for e in items],
            replace=True,
        )
    return skipped


def identify(s: IdentifySettings) -> Report:
    card = load_card(s.card_path)
    enroll, bad_enroll = read_utterances(s.enroll_list, s.root)
    tests, bad_tests = read_utterances(s.test_list, s.root)
    skipped = [Skipped.from_list_error(e) for e in bad_enroll + bad_tests]

    # Enrollment goes through the same function as the daemon's (vggvox.enrollment).
    enroll_tag = "vad" + (f"-max{s.max_sec_enroll:g}s" if s.max_sec_enroll else "")
    enrolled = _embed(enroll, s, card, s.max_sec_enroll, "enroll", enroll_tag, check_speech=True)
    with tempfile.TemporaryDirectory(prefix="vggvox-") as tmp:
        store = VoiceprintStore(s.store_path or Path(tmp) / "voiceprints.db")
        skipped += enroll_all(enroll, enrolled, store, card.tag)
        names, prints = store.voiceprints(card.tag)
    report = Report(speakers=names)
    index = {n: i for i, n in enumerate(names)}

    usable = []
    for t in tests:
        if t.speaker not in index:
            skipped.append(Skipped(str(t.path), f"speaker {t.speaker!r} is not enrolled", t.line))
        else:
            usable.append(t)
    tested = _embed(usable, s, card, None, "test", "")
    scorer = Scorer(s.metric)
    ok = [t for t in usable if tested[t.path].embedding is not None]
    for t in usable:
        if tested[t.path].embedding is None:
            skipped.append(Skipped(str(t.path), tested[t.path].reason, t.line))
    if ok and names:
        all_scores = scorer.scores(np.stack([tested[t.path].embedding for t in ok]), prints)
        for t, row in zip(ok, all_scores, strict=True):
            truth = row[index[t.speaker]]
            rank = 1 + int(np.sum(row > truth))
            top = [(m.name, m.score) for m in scorer.top_k(row, names, TOP_N)]
            report.results.append(TestResult(t.path, t.speaker, row, top, rank))
    report.skipped = skipped
    return report


def write_results(report: Report, out: TextIO) -> None:
    """One CSV row per test utterance, then the accuracies as '#' comment lines."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        ["filename", "speaker", "rank"]
        + [f"top{i + 1}" for i in range(TOP_N)]
        + [f"top{i + 1}_score" for i in range(TOP_N)]
        + [f"score:{n}" for n in report.speakers]
    )
    for r in report.results:
        names = [n for n, _ in r.top] + [""] * (TOP_N - len(r.top))
        scores = [f"{v:.4f}" for _, v in r.top] + [""] * (TOP_N - len(r.top))
        w.writerow([str(r.path), r.speaker, r.rank] + names + scores
                   + [f"{v:.4f}" for v in r.scores])
    acc = report.accuracy
    out.write(f"# scored {len(report.results)}, skipped {len(report.skipped)}, "
              f"enrolled speakers {len(report.speakers)}\n")
    for key in ("top1", "top1pct", "top5pct", "top10pct"):
        out.write(f"# {key} {100 * acc[key]:.2f}%\n")
