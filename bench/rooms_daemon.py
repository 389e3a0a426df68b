"""One room through the real vggvoxd, for bench/bench_rooms.py (issue 22).

A ``RoomDaemon`` runs vggvoxd (``tests/daemon_proc.py``) with one live source
named after the room, fed on standard input: ``uri: stdin`` is lossless (the
pipe holds the writer back, no window is ever dropped) and runs as fast as the
embedder, where a ``file:`` source plays at real-time pace and drops what the
embedder cannot keep up with. Nothing is fed until the speakers are enrolled,
so the room starts from its cold evidence (the clips declared as recorded on
it) and hears only the stream the bench builds.

The stream is the utterances back to back with ``GAP_S`` of silence between
them (longer than the VAD's hangover, so each utterance is a speech segment of
its own and its turn closes at its end); each utterance's span is remembered,
and an utterance is *named* by the label of the final turns covering most of it.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# The daemon runner is the tests' own helper, as in bench/bench_daemon.py.
from benchkit import DaemonProcess

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16
from vggvox.eval.timeline import Labelled
from vggvox.recording.rttm import Segment
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll

GAP_S = 1.5
"""Silence between utterances: well over the VAD's 300 ms hangover."""
MAX_BYTES = 16 << 20
STATUS_S = 0.5
"""The daemon's status heartbeat: the end of the stream is seen within it."""
MIN_ENROLL_S = 0.5
"""enroll.min_speech_s: the least the daemon allows (default 3 s), so that the list's
speakers are enrolled as rooms_study enrolls them; one LibriSpeech half holds 1.4 s of
speech, and two hold under 0.5 s, which the daemon refuses even so (reported)."""
CONV_GAP_S = 3.0
"""Silence between two conversations in one stream: every turn closes in it."""
MIN_SPEED = 1.0
"""The slowest the daemon may run (audio seconds per wall second) before a run is
given up: real time, far below what a lossless source runs at."""


def source_name(room: str) -> str:
    """A valid source name for a room (``mixture (all)`` -> ``mixture-all``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", room).strip("-")


@dataclass(frozen=True)
class Span:
    """One utterance's place in the stream, in seconds."""

    key: str
    start: float
    end: float


def build_stream(paths: Sequence[Path], keys: Sequence[str], lead_s: float = GAP_S
                 ) -> tuple[np.ndarray, list[Span]]:
    """The utterances as one int16 track with ``GAP_S`` of silence between (and
    ``lead_s`` before), and each one's span."""
    gap = np.zeros(round(GAP_S * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = [np.zeros(round(lead_s * SAMPLE_RATE), np.float32)]
    spans, pos = [], parts[0].size
    for path, key in zip(paths, keys, strict=True):
        x = load_audio(path)
        spans.append(Span(key, pos / SAMPLE_RATE, (pos + x.size) / SAMPLE_RATE))
        parts += [x, gap]
        pos += x.size + gap.size
    return to_int16(np.concatenate(parts)), spans


def label_of(span: Span, finals: Sequence[dict[str, Any]], offset: float = 0.0
             ) -> tuple[bool, str | None]:
    """(covered by a final turn at all, the label covering most of the span's time):
    None for a turn that names nobody (an unknown voice)."""
    share: dict[str | None, float] = defaultdict(float)
    for t in finals:
        a, b = t["t_start"] - offset, t["t_end"] - offset
        overlap = min(b, span.end) - max(a, span.start)
        if overlap > 0:
            share[t["speaker"]] += overlap
    if not share:
        return False, None
    return True, max(share, key=lambda k: share[k])


def conversation_stream(lead: np.ndarray | None, wavs: Sequence[Path]
                        ) -> tuple[np.ndarray, list[float]]:
    """Conversations back to back (after ``lead``, else ``CONV_GAP_S`` of silence), each
    followed by ``CONV_GAP_S`` of silence: the track and where each one starts (s)."""
    gap = np.zeros(round(CONV_GAP_S * SAMPLE_RATE), np.int16)
    parts = [gap if lead is None else lead]
    pos, offsets = parts[0].size, []
    for wav in wavs:
        offsets.append(pos / SAMPLE_RATE)
        x = to_int16(load_audio(wav))
        parts += [x, gap]
        pos += x.size + gap.size
    return np.concatenate(parts), offsets


def conversation_turns(turns: Sequence[dict[str, Any]], offset: float, duration_s: float
                       ) -> list[dict[str, Any]]:
    """The turn events of the conversation at ``offset``, on its own clock."""
    return [{**e, "t_start": e["t_start"] - offset, "t_end": e["t_end"] - offset}
            for e in turns if offset - 0.5 <= e["t_start"] < offset + duration_s + CONV_GAP_S / 2]


def stranger_named_split(segments: Sequence[Segment], enrolled: set[str],
                         finals: Sequence[Labelled]) -> tuple[float, float]:
    """Strangers' speech (s, whole segments, no collar) inside final turns that name
    someone: (in a turn that also holds that speaker's own speech: a change the turns
    missed; in a turn of no such speech: the open-set rule's false accept)."""
    merged = alone = 0.0
    for t in finals:
        if t.label is None:
            continue
        cover = [(s.speaker, min(s.end, t.end) - max(s.start, t.start)) for s in segments]
        strangers = sum(o for who, o in cover if o > 0 and who not in enrolled)
        if sum(o for who, o in cover if o > 0 and who == t.label) > 0.1:
            merged += strangers
        else:
            alone += strangers
    return merged, alone


@dataclass
class Played:
    """What the daemon made of one stream."""

    finals: list[dict[str, Any]]
    """Its final ``turn`` events."""
    turns: list[dict[str, Any]]
    """Every ``turn`` event (open updates too: the decisions a delay is measured on)."""
    calibration: dict[str, Any]
    """The room's summary from the ``calibration`` control op, after the stream."""
    audio_s: float
    cpu_s: float
    """The daemon's CPU seconds (user + system) from the first sample to the end."""
    wall_s: float
    dropped_windows: int


@dataclass
class RoomDaemon:
    """vggvoxd with one stdin source ``source``, its store in ``tmp`` (fresh: a new room),
    ``scoring.adapt`` as ``adapt``."""

    tmp: Path
    source: str
    adapt: bool
    model: str
    refused: list[str] = field(default_factory=list)
    """Enrollments refused without ``force`` (the reason), then stored with it."""
    not_enrolled: dict[str, str] = field(default_factory=dict)
    """Speakers refused even with ``force`` (too little speech), and why."""
    _d: DaemonProcess | None = None
    _events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RoomDaemon:
        cfg = self.tmp / "vggvoxd.yaml"
        cfg.write_text(yaml.safe_dump({
            "sources": [{"name": self.source, "uri": "stdin"}],
            "model": {"name": self.model}, "scoring": {"adapt": self.adapt},
            "enroll": {"min_speech_s": MIN_ENROLL_S}, "status": {"interval_s": STATUS_S}}))
        self._d = DaemonProcess(self.tmp, source=None, args=["--config", str(cfg)])
        self._d.start(timeout=60)
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._d is not None and self._d.proc is not None:
            self._d.stop()

    @property
    def daemon(self) -> DaemonProcess:
        assert self._d is not None
        return self._d

    def log_lines(self, pattern: str) -> list[str]:
        """The daemon's log lines matching ``pattern`` (a regular expression)."""
        text = self.daemon.log.read_text(errors="replace")
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def _collect(self) -> None:
        """Every turn and status event, in a thread of its own: read at once, so that
        the publisher's high-water mark never drops one for a slow reader."""
        sub = self.daemon.conn.subscribe(["turn", "status"])
        try:
            while not self._stop.is_set():
                ev = self.daemon.conn.receive(sub, 0.2)
                if ev is not None:
                    with self._lock:
                        self._events.append(ev)
        finally:
            sub.close()

    def _seen(self, pred: Any) -> bool:
        with self._lock:
            return any(pred(e) for e in self._events)

    def enroll(self, speakers: dict[str, list[Path]]) -> None:
        """Enroll each speaker from files declared as recorded on this source. A refusal
        (a look-alike name, clips unlike each other) is noted, then forced: the bench
        measures the room, the same list's enrollment in every run."""
        for name, files in speakers.items():
            try:
                enroll(self.daemon.conn, name, files, None, False, MAX_BYTES,
                       source=self.source, timeout=120)
            except ClientError as e:
                try:
                    enroll(self.daemon.conn, name, files, None, False, MAX_BYTES,
                           force=True, source=self.source, timeout=120)
                    self.refused.append(f"{name}: {e.code}: {e}")
                except ClientError as e2:
                    self.not_enrolled[name] = str(e2)

    def calibration(self) -> dict[str, Any]:
        return dict(self.daemon.conn.request("calibration")["sources"][self.source])

    def cold(self) -> dict[str, Any]:
        """The room once its enrollment evidence is in. The daemon loads the voiceprints
        (and scores the declared clips) before its next batch of windows, so before any
        audio the ``calibration`` op would still show the room as it was: the ``reload``
        op loads them now, as that first batch will."""
        self.daemon.conn.request("reload")
        return self.calibration()

    def play(self, pcm: np.ndarray) -> Played:
        """Feed ``pcm`` (int16) as the source's audio, until every window is decided."""
        d = self.daemon
        # A status event proves the subscription is live before the first sample.
        deadline = time.monotonic() + 10
        while not self._seen(lambda e: e["type"] == "status"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no status event from vggvoxd: {d.output()}")
            time.sleep(0.05)
        with self._lock:
            self._events.clear()
        audio_s = pcm.size / SAMPLE_RATE
        c0, t0 = d.cpu_s(), time.monotonic()
        d.feed(pcm.tobytes(), close=True)
        deadline = t0 + 60 + audio_s / MIN_SPEED

        def ended(e: dict[str, Any]) -> bool:
            return (e["type"] == "status" and e["source"] == self.source
                    and e["state"] == "finished")

        while not self._seen(ended):
            if time.monotonic() > deadline or d.proc is None or d.proc.poll() is not None:
                raise RuntimeError(f"{self.source}: the stream did not finish within "
                                   f"{deadline - t0:.0f} s: {d.output()}")
            time.sleep(0.1)
        cpu, wall = d.cpu_s() - c0, time.monotonic() - t0
        time.sleep(2 * STATUS_S)  # the last events on their way
        status = d.conn.request("status")["sources"][self.source]
        cal = self.calibration()
        with self._lock:
            turns = [e for e in self._events if e["type"] == "turn"
                     and e["source"] == self.source]
        return Played([t for t in turns if t["final"]], turns, cal, audio_s, cpu, wall,
                      int(status.get("dropped_windows", 0)))


def daemon_run(room: str, speakers: dict[str, list[Path]], pcm: np.ndarray, adapt: bool,
               model: str, problems: list[str]) -> tuple[dict[str, Any], Played, set[str]]:
    """A fresh store, ``speakers`` enrolled on the room's source, ``pcm`` played: (the room
    before the audio, the run, the speakers the daemon would not enroll). The daemon's
    warnings and errors, and enrollment refusals, go to ``problems``."""
    with tempfile.TemporaryDirectory(prefix="vggvox-rooms-") as t, \
            RoomDaemon(Path(t), source_name(room), adapt, model) as rd:
        rd.enroll(speakers)
        stale, start = rd.calibration(), rd.cold()
        if stale["scores"] != start["scores"]:
            problems.append(f"{room}: the calibration op after enrolling, before any audio, "
                            f"shows {stale['scores']} scores, {start['scores']} after a reload "
                            "op (the voiceprints load at the first batch of windows)")
        played = rd.play(pcm)
        problems += [f"{room}: enroll refused without force: {r}" for r in rd.refused]
        problems += [f"{room}: NOT ENROLLED, with or without force: {why}"
                     for why in rd.not_enrolled.values()]
        problems += [f"{room}: {line}"
                     for line in rd.log_lines(r" (WARNING|ERROR|CRITICAL) |Traceback")]
    return start, played, set(rd.not_enrolled)
