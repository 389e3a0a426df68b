"""Verification on VoxCeleb-format trials: EER, minDCF, DET curve."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggvox.eval.cache import EmbeddingCache
from vggvox.eval.lists import Trial, read_trials
from vggvox.eval.metrics import Det, det_curve, eer, min_dcf
from vggvox.modelcard import load_card
from vggvox.scoring import Scorer
from vggvox_client.common import Skipped
from vggvox_client.jobs import JobSettings, embed_files


@dataclass
class VerifyReport:
    trials: list[Trial] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    eer: float = float("nan")
    threshold: float = float("nan")
    mindcf_001: float = float("nan")
    mindcf_005: float = float("nan")
    det: Det | None = None

    def summary(self) -> dict[str, object]:
        return {
            "eer": 100 * self.eer,
            "mindcf_001": self.mindcf_001,
            "mindcf_005": self.mindcf_005,
            "threshold": self.threshold,
            "n_trials": len(self.scores),
            "n_skipped": len(self.skipped),
            "skipped": [s.as_dict() for s in self.skipped],
        }


def verify(
    trials_path: Path,
    card_path: Path,
    root: Path | None = None,
    metric: str = "cosine",
    workers: int = 1,
    cache_dir: Path | None = None,
    progress: bool = False,
    ray: str | None = None,
) -> VerifyReport:
    """``ray``: embed on the Ray cluster at this address (``raybatch``), not ``workers``."""
    trials, bad = read_trials(trials_path, root)
    report = VerifyReport(skipped=[Skipped.from_list_error(e) for e in bad])
    card = load_card(card_path)
    cache = EmbeddingCache(cache_dir, card.sha256) if cache_dir else None
    files = [p for t in trials for p in (t.enroll, t.test)]
    embedded = embed_files(files, JobSettings(card_path), workers=workers, cache=cache,
                           progress="trials" if progress else "", ray=ray)
    scorer = Scorer(metric)
    for t in trials:
        a, b = embedded[t.enroll], embedded[t.test]
        failed = next((e for e in (a, b) if e.embedding is None), None)
        if failed is not None:
            report.skipped.append(Skipped(str(failed.path), failed.reason, t.line,
                                          str(trials_path)))
            continue
        report.trials.append(t)
        report.scores.append(scorer.pair(a.vector, b.vector))
    labels = np.array([t.label for t in report.trials])
    if labels.size and 0 < labels.sum() < labels.size:
        scores = np.array(report.scores)
        report.eer, report.threshold = eer(scores, labels)
        report.mindcf_001 = min_dcf(scores, labels, 0.01)
        report.mindcf_005 = min_dcf(scores, labels, 0.05)
        report.det = det_curve(scores, labels)
    return report
