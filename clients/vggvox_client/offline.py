"""Identification: the VGGVox ``offline`` and ``batch_offline`` modes.

Enrollment utterances are embedded and stored as voiceprints (one normalised
mean per speaker) in a VoiceprintStore; each test utterance is scored against
every voiceprint at once.

Closed set by default: a test utterance of a speaker who is not enrolled is
skipped. Open set (``open_set``): it is a stranger's, scored as an impostor,
and every test utterance gets a decision (its best enrolled speaker if the
score reaches the AcceptRule's cutoff for its length, else ``unknown``).

Very large enrolled sets (at or above ``SearchSettings.index_above`` speakers) go
through the same ``vggvox.search.Searcher`` as the daemon: an approximate index
proposes each test's best ``rescore`` candidates, scored exactly. A test's scores
against every speaker are then never computed: the CSV has no ``score:NAME``
columns, a rank is known within those candidates only (``>N`` beyond), and a
top-x % figure whose cut-off lies deeper than that is not computed (None).
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import numpy as np
import soundfile as sf

from vggvox.calibration import AcceptRule
from vggvox.eval.cache import EmbeddingCache
from vggvox.eval.lists import Utterance, read_utterances
from vggvox.eval.metrics import (
    TOP_FRACTIONS,
    Det,
    OpenSetPoint,
    identification_accuracy,
    open_set_det,
    open_set_point,
    open_set_trade_off,
    top_k_for,
)
from vggvox.eval.openset import accept_rule, plot_open_set
from vggvox.modelcard import ModelCard, load_card
from vggvox.scoring import Scorer
from vggvox.search import Searcher, SearchSettings
from vggvox.store import NewPrints
from vggvox.storeapi import Store
from vggvox.storeopen import open_store
from vggvox_client.common import Skipped
from vggvox_client.jobs import Embedded, JobSettings, Request, embed_together

TOP_N = 5
UNKNOWN = "unknown"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestResult:
    path: Path
    speaker: str
    scores: np.ndarray | None
    """One score per enrolled speaker, in the order of Report.speakers; None when the
    set is searched through the index (Report.depth)."""
    top: list[tuple[str, float]]
    rank: int | None
    """1-based rank of the correct speaker; None for a stranger (open set). With the
    index, Report.depth + 1 means "not among the candidates"."""
    speech_s: float = 0.0
    """Seconds of the utterance: what the open-set cutoff depends on."""
    decision: str | None = None
    """Open set: the name given, or ``unknown``; None in closed set."""
    cutoff: float | None = None
    confidence: float | None = None
    """Open set, with a calibrated model: probability that the best speaker is right."""

    @property
    def enrolled(self) -> bool:
        return self.rank is not None


@dataclass
class Report:
    speakers: list[str]
    results: list[TestResult] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    rule: AcceptRule | None = None
    """Set in open set: the rule behind every decision."""
    depth: int | None = None
    """Set when the speakers were searched through the index: ranks are known up to
    this many candidates a test."""

    @property
    def accuracy(self) -> dict[str, float | None]:
        """Closed-set figures, over the enrolled speakers' test utterances; with the
        index, None for a top-x % whose cut-off lies deeper than ``depth``."""
        ranks = [r.rank for r in self.results if r.rank is not None]
        acc: dict[str, float | None] = {**identification_accuracy(ranks, len(self.speakers))}
        if self.depth is not None:
            for key, frac in TOP_FRACTIONS.items():
                if top_k_for(frac, len(self.speakers)) > self.depth:
                    acc[key] = None
        return acc

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        best = np.array([r.top[0][1] if r.top else -np.inf for r in self.results])
        right = np.array([bool(r.top) and r.top[0][0] == r.speaker for r in self.results])
        return best, right, np.array([r.enrolled for r in self.results], dtype=bool)

    def open_set_point(self) -> OpenSetPoint:
        best, right, enrolled = self._arrays()
        cutoffs = np.array([np.inf if r.cutoff is None else r.cutoff for r in self.results])
        return open_set_point(best, right, enrolled, cutoffs)

    def open_set_det(self) -> Det | None:
        """The trade-off of one raw threshold; None without both strangers and enrolled."""
        best, right, enrolled = self._arrays()
        if enrolled.all() or not enrolled.any():
            return None
        return open_set_det(best, right, enrolled)

    def open_set_summary(self) -> dict[str, object]:
        assert self.rule is not None
        det = self.open_set_det()
        return {
            **self.open_set_point().as_dict(),
            **(open_set_trade_off(det) if det is not None else {}),
            **self.rule.settings(),
        }

    def summary(self) -> dict[str, object]:
        return {
            **self.accuracy,
            "n_speakers": len(self.speakers),
            "n_scored": len(self.results),
            "n_skipped": len(self.skipped),
            "skipped": [s.as_dict() for s in self.skipped],
            **(self.open_set_summary() if self.rule is not None else {}),
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
    store_path: str | Path | None = None
    """Keep the enrolled voiceprints here (a path or URL, ``storeopen``); a temporary
    store otherwise."""
    progress: bool = False
    open_set: bool = False
    """Strangers' tests are scored as impostors, and each test gets a decision."""
    false_accept: float | None = None
    threshold: float | None = None
    """Open set: the AcceptRule's settings (vggvox.eval.openset.accept_rule)."""
    search: SearchSettings = field(default_factory=SearchSettings)
    """When and how very large enrolled sets are searched through the index."""
    ray: str | None = None
    """Embed on the Ray cluster at this address (``raybatch``) instead of ``workers``."""


def _seconds(e: Embedded) -> float:
    """Length of a test file; a cached embedding does not carry it."""
    if e.seconds > 0:
        return e.seconds
    try:
        return float(sf.info(str(e.path)).duration)
    except (OSError, RuntimeError):
        return 0.0  # the calibration clamps it to its shortest evidence


def _request(utts: list[Utterance], s: IdentifySettings, card: ModelCard,
             max_seconds: float | None, tag: str, check_speech: bool = False) -> Request:
    cache = EmbeddingCache(s.cache_dir, card.sha256, tag) if s.cache_dir else None
    # An enrollment clip that passes the speech check is embedded whole, as a test file
    # or a trial's is: the plain cache gets it too, for a verify after a batch run.
    plain = (EmbeddingCache(s.cache_dir, card.sha256)
             if s.cache_dir and check_speech and not max_seconds else None)
    settings = JobSettings(s.card_path, max_seconds=max_seconds, check_speech=check_speech)
    return Request([u.path for u in utts], settings, cache, plain)


def _name(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def enroll_all(
    utts: list[Utterance], embedded: dict[Path, Embedded], store: Store,
    model: ModelCard, source: Path | None = None
) -> list[Skipped]:
    """Enroll each speaker with their usable utterances, all in one transaction."""
    skipped: list[Skipped] = []
    by_speaker: dict[str, list[Embedded]] = {u.speaker: [] for u in utts}
    for u in utts:
        e = embedded[u.path]
        if e.embedding is None:
            skipped.append(Skipped(str(u.path), e.reason, u.line, _name(source)))
        else:
            by_speaker[u.speaker].append(e)
    speakers = []
    for name, items in by_speaker.items():
        if not items:
            skipped.append(Skipped(name, "speaker has no usable enrollment utterance",
                                   source=_name(source)))
            continue
        speakers.append(NewPrints(name, np.stack([e.vector for e in items]),
                                  [str(e.path) for e in items], [e.seconds for e in items]))
    store.enroll_many(speakers, model, replace=True)
    return skipped


def _decide(r: TestResult, rule: AcceptRule | None, n_enrolled: int) -> TestResult:
    """Open set: name the best speaker at or above the rule's cutoff for this length."""
    if rule is None or not r.top:
        return r
    best_name, best = r.top[0]
    cutoff = rule.cutoff(r.speech_s, n_enrolled)
    return replace(r, decision=best_name if best >= cutoff else UNKNOWN, cutoff=cutoff,
                   confidence=rule.confidence(best, r.speech_s, n_enrolled))


def identify(s: IdentifySettings) -> Report:
    card = load_card(s.card_path)
    rule = accept_rule(card, s.metric, s.false_accept, s.threshold) if s.open_set else None
    enroll, bad_enroll = read_utterances(s.enroll_list, s.root)
    tests, bad_tests = read_utterances(s.test_list, s.root)
    skipped = [Skipped.from_list_error(e) for e in bad_enroll + bad_tests]

    # Enrollment goes through the same function as the daemon's (vggvox.enrollment).
    # Both lists in one run of the workers: the tests of a speaker who ends up not
    # enrolled are embedded for nothing, but no worker waits between the lists.
    enroll_tag = "vad" + (f"-max{s.max_sec_enroll:g}s" if s.max_sec_enroll else "")
    enrolled, tested = embed_together(
        [_request(enroll, s, card, s.max_sec_enroll, enroll_tag, check_speech=True),
         _request(tests, s, card, None, "")],
        workers=s.workers, progress="embedding" if s.progress else "", ray=s.ray)
    with tempfile.TemporaryDirectory(prefix="vggvox-") as tmp:
        store = open_store(s.store_path or Path(tmp) / "voiceprints.db")
        skipped += enroll_all(enroll, enrolled, store, card,  # bound to the file's sha256
                              s.enroll_list)
        names, prints = store.voiceprints(card)
    report = Report(speakers=names, rule=rule)
    index = {n: i for i, n in enumerate(names)}

    usable = []
    for t in tests:
        if t.speaker not in index and rule is None:
            skipped.append(Skipped(str(t.path), f"speaker {t.speaker!r} is not enrolled", t.line,
                                   str(s.test_list)))
        else:
            usable.append(t)
    scorer = Scorer(s.metric)
    ok = [t for t in usable if tested[t.path].embedding is not None]
    for t in usable:
        if tested[t.path].embedding is None:
            skipped.append(Skipped(str(t.path), tested[t.path].reason, t.line,
                                   str(s.test_list)))
    if ok and names and len(names) >= s.search.index_above:
        report.depth = s.search.rescore
        _search_indexed(report, ok, tested, names, prints, s, rule, index)
    elif ok and names:
        all_scores = scorer.scores(np.stack([tested[t.path].vector for t in ok]), prints)
        for t, row in zip(ok, all_scores, strict=True):
            rank = None
            if t.speaker in index:
                rank = 1 + int(np.sum(row > row[index[t.speaker]]))
            top = [(m.name, m.score) for m in scorer.top_k(row, names, TOP_N)]
            report.results.append(_decide(TestResult(
                t.path, t.speaker, row, top, rank, _seconds(tested[t.path])), rule,
                len(names)))
    report.skipped = skipped
    return report


def _search_indexed(report: Report, ok: list[Utterance], tested: dict[Path, Embedded],
                    names: list[str], prints: np.ndarray, s: IdentifySettings,
                    rule: AcceptRule | None, index: dict[str, int]) -> None:
    """Each test's best ``rescore`` speakers through the index, with exact scores."""
    searcher = Searcher(names, prints, s.metric, s.search)
    searcher.prepare()
    log.info("%d speakers: searched through an index built in %.1f s", len(names),
             searcher.build_s or 0.0)
    t0 = time.perf_counter()
    depth = s.search.rescore
    found = searcher.search(np.stack([tested[t.path].vector for t in ok]),
                            max(TOP_N, depth))
    log.info("%d tests searched in %.1f s", len(ok), time.perf_counter() - t0)
    for t, matches in zip(ok, found, strict=True):
        rank = None
        if t.speaker in index:  # the test's own voiceprint: its rank among the candidates
            own = next((m.score for m in matches if m.name == t.speaker), None)
            rank = (depth + 1 if own is None
                    else 1 + sum(1 for m in matches if m.score > own))
        top = [(m.name, m.score) for m in matches[:TOP_N]]
        report.results.append(_decide(TestResult(
            t.path, t.speaker, None, top, rank, _seconds(tested[t.path])), rule, len(names)))


def write_results(report: Report, out: TextIO) -> None:
    """One CSV row per test utterance, nothing else: any CSV reader takes the file as it
    is. The figures go to the summary (stdout, or --json). Searched through the index,
    a row has no ``score:NAME`` columns, and a rank beyond the candidates reads ``>N``."""
    open_set = report.rule is not None
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        ["filename", "speaker", "rank"]
        + (["decision", "confidence"] if open_set else [])
        + [f"top{i + 1}" for i in range(TOP_N)]
        + [f"top{i + 1}_score" for i in range(TOP_N)]
        + ([f"score:{n}" for n in report.speakers] if report.depth is None else [])
    )
    for r in report.results:
        names = [n for n, _ in r.top] + [""] * (TOP_N - len(r.top))
        scores = [f"{v:.4f}" for _, v in r.top] + [""] * (TOP_N - len(r.top))
        decided = ([r.decision or "", "" if r.confidence is None else f"{r.confidence:.4f}"]
                   if open_set else [])
        rank: object = "" if r.rank is None else r.rank
        if report.depth is not None and r.rank is not None and r.rank > report.depth:
            rank = f">{report.depth}"
        w.writerow([str(r.path), r.speaker, rank] + decided + names + scores
                   + ([] if r.scores is None else [f"{v:.4f}" for v in r.scores]))


def _pct(v: object) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, float) else "n/a"


def open_set_lines(report: Report) -> list[str]:
    """The open-set figures in words: the operating point, then the best trade-off."""
    assert report.rule is not None
    f = report.open_set_summary()
    n = f["n_enrolled_tests"]
    lines = [
        f"open set, {report.rule.describe()}",
        f"strangers accepted {_pct(f['false_accept_rate'])} "
        f"({f['strangers_accepted']} of {f['n_strangers']} stranger test utterances)",
        f"enrolled speakers: right {_pct(f['enrolled_right_rate'])} ({f['enrolled_right']} "
        f"of {n}), wrong {_pct(f['enrolled_wrong_rate'])} ({f['enrolled_wrong']}), missed "
        f"{_pct(f['enrolled_missed_rate'])} ({f['enrolled_missed']})",
    ]
    if "open_set_eer" in f:
        def at(key: str) -> str:
            v = f[key]
            return f"{v:.4f}" if isinstance(v, float) else "above every score"

        lines.append(
            f"best trade-off of one raw threshold: equal error {_pct(f['open_set_eer'])} "
            f"at {at('open_set_eer_threshold')}; lowest total (strangers accepted + enrolled "
            f"not named right) {_pct(f['open_set_min_total'])} at "
            f"{at('open_set_min_total_threshold')}")
    else:
        lines.append("best trade-off: n/a (needs both strangers and enrolled speakers)")
    return lines


def draw_open_set(report: Report, path: Path, title: str) -> bool:
    """The open-set DET with the operating point marked; False when there is none."""
    det = report.open_set_det()
    if det is None:
        return False
    p = report.open_set_point()
    plot_open_set(det, path, title, p.false_accept_rate, 1 - p.enrolled_right / p.n_enrolled)
    return True
