"""Speaker-turn figures on synthetic conversations, in-process and through vggvoxd.

    .venv/bin/python bench/bench_turns.py [--realtime 1] [--model campplus] [--json]

Builds the default conversations (3 x >= 150 s, 4 enrolled speakers and 2
strangers each, seed 0) from ../shared/data/speech and reports:

- in-process (the library's Recognizer with the default RecognizerConfig):
  identification error rate, strangers' false-accept rate, turn accuracy,
  flicker, delay to the right label (median, p90), missed changes, and speed
  (seconds of audio per second of compute), per conversation and pooled;
- through the real daemon (``--source stdin``, ipc endpoints in a temp folder,
  exactly the conversation's 4 speakers enrolled): the same figures for a fast
  replay, its throughput and dropped windows; for the first ``--realtime``
  conversations a replay at real-time pace too, whose ``speaker`` and ``turn``
  events must equal the fast replay's; and whether the daemon's final turns
  equal those of the in-process engine fed what the daemon is fed (16-bit PCM,
  enrollment and conversation alike; the float figures above can differ where
  a decision sits on its cutoff: conv0 has one such stranger's turn);
- starvation: the daemon's live stdin source fed at real-time pace (~60 s)
  while 4 fast replays run at once: its speaker events and dropped windows,
  against the speaker events of the same audio replayed alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

# The daemon runner is the tests' own helper.
from benchkit import SPEECH, DaemonProcess

from vggvox.audio import SAMPLE_RATE, load_audio, to_int16
from vggvox.embedder import Embedder
from vggvox.eval.conversations import Conversation, ConversationSpec, build_conversations
from vggvox.eval.engine import enroll_from_list, recognize, turn_timeline
from vggvox.eval.lists import read_utterances
from vggvox.eval.timeline import ConversationScore, Labelled, combine, score_conversation
from vggvox.recording.rttm import read_rttm
from vggvox.stream.recognizer import Recognizer, RecognizerConfig
from vggvox_client.connection import Connection
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one
from vggvoxd.config import Settings

MAX_BYTES = 16 << 20
LIVE_S = 60.0
KEY_FIELDS = ("type", "t_start", "t_end", "speaker", "score", "top", "turn", "final")

Event = dict[str, Any]


# -- helpers -------------------------------------------------------------------------------

def figures(s: ConversationScore) -> dict[str, Any]:
    return {"ier": s.ier, "stranger_fa_rate": s.stranger_fa_rate,
            "turn_accuracy": s.turn_accuracy, "flicker": s.flicker,
            "delay_median": s.delay_median, "delay_p90": s.delay_p90,
            "missed_changes": s.missed_changes, "true_changes": s.true_changes,
            "scored_s": round(s.scored_s, 2)}


def key(ev: Event) -> tuple[Any, ...]:
    """An event without its wall-clock and routing fields (time, seq, captured, source)."""
    out = []
    for f in KEY_FIELDS:
        v = ev.get(f)
        if f == "top" and v is not None:
            v = tuple(tuple(x) for x in v)
        out.append(v)
    return tuple(out)


def speaker_turn_keys(events: list[Event]) -> list[tuple[Any, ...]]:
    return [key(e) for e in events if e["type"] in ("speaker", "turn")]


def finals_equal(a: list[Labelled], b: list[Labelled], tol: float = 0.0) -> bool:
    return len(a) == len(b) and all(
        x.label == y.label and abs(x.start - y.start) <= tol and abs(x.end - y.end) <= tol
        for x, y in zip(a, b, strict=True))


def enroll_lists(conv: Conversation) -> dict[str, list[Path]]:
    by: dict[str, list[Path]] = {}
    for u in read_utterances(conv.enroll_list)[0]:
        by.setdefault(u.speaker, []).append(u.path)
    return by


def start_daemon(tmp: Path, config: Path, source: str = "stdin") -> DaemonProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return DaemonProcess(tmp, source=source,
                         args=["--config", str(config), "--log-level", "WARNING"]).start(60)


def enroll_exactly(conn: Connection, conv: Conversation) -> int:
    """Remove every enrolled speaker, enroll this conversation's; return the daemon's count."""
    for s in conn.request("list", timeout=10)["speakers"]:
        conn.request("remove", timeout=10, name=s["name"])
    for name, files in enroll_lists(conv).items():
        enroll(conn, name, files, None, False, MAX_BYTES)
    return int(conn.request("reload", timeout=30)["speakers"])


def finished_status(conn: Connection, sock: Any, prefix: str, wait: float = 3.0) -> Event | None:
    """The 'finished' status of the replay whose source starts with ``prefix``."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        ev = conn.receive(sock, 0.2)
        if (ev is not None and ev["type"] == "status" and ev.get("state") == "finished"
                and str(ev["source"]).startswith(prefix)):
            return ev
    return None


def timed_replay(conn: Connection, wav: Path, realtime: bool, timeout: float
                 ) -> tuple[list[Event], float, Event | None]:
    """Events, wall seconds and the finished status of one replay."""
    sock = conn.subscribe(["status"])
    try:
        t0 = time.monotonic()
        events = replay_one(conn, wav, realtime=realtime, as_json=True, timeout=timeout,
                            echo=False)
        wall = time.monotonic() - t0
        done = finished_status(conn, sock, f"replay:{wav.name}-")
    finally:
        sock.close()
    return events, wall, done


# -- the three parts -----------------------------------------------------------------------

def as_sent(path: Path) -> np.ndarray:
    """A file's samples as a client sends them to the daemon: 16-bit PCM. The engine takes
    it as it is, as the daemon does (int16 to float and back is not the identity: VAD
    would see other samples)."""
    return to_int16(load_audio(path))


def in_process(convs: list[Conversation], model: str,
               load: Callable[[Path], np.ndarray] = load_audio) -> dict[str, Any]:
    settings = Settings()
    embedder = Embedder.from_card(model, threads=settings.model.threads)
    rows, scores, finals = [], [], []
    total_audio = total_compute = 0.0
    for conv in convs:
        enrolled = enroll_from_list(embedder, conv.enroll_list, settings.vad,
                                    settings.enroll.min_speech_s, load)
        recognizer = Recognizer(embedder, enrolled.voiceprints, RecognizerConfig())
        audio = load(conv.wav)
        t0 = time.perf_counter()
        results = recognize(recognizer, audio)
        took = time.perf_counter() - t0
        turns, decisions = turn_timeline(results)
        score = score_conversation(read_rttm(conv.rttm), set(enrolled.voiceprints.names),
                                   turns, decisions)
        seconds = len(audio) / SAMPLE_RATE
        total_audio, total_compute = total_audio + seconds, total_compute + took
        scores.append(score)
        finals.append(turns)
        rows.append({"conversation": conv.index, "audio_s": round(seconds, 2),
                     "compute_s": round(took, 2), "speed": seconds / took,
                     "turns": len(turns), "problems": enrolled.problems, **figures(score)})
    pooled = {"conversation": "all", "audio_s": round(total_audio, 2),
              "compute_s": round(total_compute, 2), "speed": total_audio / total_compute,
              "turns": sum(len(f) for f in finals), **figures(combine(scores))}
    return {"rows": rows, "combined": pooled, "finals": finals,
            "config_matches_daemon": asdict(RecognizerConfig()) == asdict(settings.recognizer())}


def through_daemon(convs: list[Conversation], tmp: Path, config: Path, n_realtime: int,
                   inproc_finals: list[list[Labelled]], say: Callable[[str], None]
                   ) -> dict[str, Any]:
    d = start_daemon(tmp / "d", config)
    rows, scores, realtime, parity = [], [], [], []
    total_audio = total_wall = 0.0
    try:
        for conv in convs:
            n = enroll_exactly(d.conn, conv)
            say(f"daemon: conv{conv.index}: {n} speakers enrolled, fast replay")
            seconds = conv.duration_s
            events, wall, done = timed_replay(d.conn, conv.wav, False, 300)
            turns, decisions = turn_timeline(events)
            score = score_conversation(read_rttm(conv.rttm), set(conv.enrolled), turns,
                                       decisions)
            scores.append(score)
            total_audio, total_wall = total_audio + seconds, total_wall + wall
            rows.append({"conversation": conv.index, "audio_s": round(seconds, 2),
                         "wall_s": round(wall, 2), "speed": seconds / wall,
                         "enrolled": n, "turns": len(turns),
                         "speaker_events": sum(e["type"] == "speaker" for e in events),
                         "dropped_windows": None if done is None else done["dropped_windows"],
                         "finished_seen": done is not None, **figures(score)})
            mine = inproc_finals[conv.index]
            parity.append({"conversation": conv.index, "daemon_finals": len(turns),
                           "inprocess_finals": len(mine),
                           "identical": finals_equal(turns, mine),
                           "equal_within_1ms": finals_equal(turns, mine, 1e-3)})
            if conv.index < n_realtime:
                say(f"daemon: conv{conv.index}: real-time replay ({seconds:.0f} s)")
                rt_events, rt_wall, rt_done = timed_replay(d.conn, conv.wav, True, 300)
                fast, slow = speaker_turn_keys(events), speaker_turn_keys(rt_events)
                first_diff = next((i for i, (a, b) in enumerate(zip(fast, slow, strict=False))
                                   if a != b), None)
                realtime.append({
                    "conversation": conv.index, "audio_s": round(seconds, 2),
                    "fast_wall_s": round(wall, 2), "realtime_wall_s": round(rt_wall, 2),
                    "realtime_overshoot_s": round(rt_wall - seconds, 2),
                    "fast_events": len(fast), "realtime_events": len(slow),
                    "identical": fast == slow, "first_difference": first_diff,
                    "realtime_dropped_windows": None if rt_done is None
                    else rt_done["dropped_windows"]})
        status = d.conn.request("status", timeout=10)
    finally:
        code, took = d.stop()
    pooled = {"conversation": "all", "audio_s": round(total_audio, 2),
              "wall_s": round(total_wall, 2), "speed": total_audio / total_wall,
              "turns": sum(r["turns"] for r in rows),
              "speaker_events": sum(r["speaker_events"] for r in rows),
              "dropped_windows": sum(r["dropped_windows"] or 0 for r in rows),
              **figures(combine(scores))}
    return {"rows": rows, "combined": pooled, "realtime": realtime, "parity": parity,
            "main_status": {k: status[k] for k in ("state", "dropped_windows",
                                                  "dropped_samples", "overflows", "windows")},
            "stop": {"exit": code, "seconds": round(took, 2)}}


def starvation(convs: list[Conversation], tmp: Path, config: Path,
               say: Callable[[str], None]) -> dict[str, Any]:
    """Live stdin at real-time pace beside 4 fast replays of the other conversations."""
    conv = convs[0]
    clip = load_audio(conv.wav)[: int(LIVE_S * SAMPLE_RATE)]
    clip_wav = tmp / "live_clip.wav"
    sf.write(str(clip_wav), clip, SAMPLE_RATE, subtype="PCM_16")
    pcm = to_int16(clip).tobytes()
    others = [c.wav for c in convs[1:]] or [conv.wav]

    # stdin:live: read as the audio comes, dropping when behind, as a microphone does (plain
    # stdin is lossless and would hold its writer back instead of competing for the embedder).
    d = start_daemon(tmp / "s", config, "stdin:live")
    try:
        enroll_exactly(d.conn, conv)
        say(f"starvation: reference replay of {LIVE_S:.0f} s alone")
        alone, _, _ = timed_replay(d.conn, clip_wav, False, 120)
        alone_keys = [key(e) for e in alone if e["type"] == "speaker"]

        sub = d.conn.subscribe(["speaker", "status"])
        time.sleep(0.3)
        live_events: list[Event] = []
        replays_done: list[tuple[str, float, int | None]] = []
        errors: list[str] = []
        feeding = threading.Event()
        feeding.set()

        def feed() -> None:
            stdin = d.proc.stdin  # type: ignore[union-attr]
            assert stdin is not None
            block = 2 * SAMPLE_RATE // 50  # 20 ms of 16-bit samples
            t0 = time.monotonic()
            try:
                for pos in range(0, len(pcm), block):
                    time.sleep(max(0.0, t0 + pos / (2 * SAMPLE_RATE) - time.monotonic()))
                    stdin.write(pcm[pos : pos + block])
                    stdin.flush()
                stdin.close()
            except OSError as e:
                errors.append(f"feeder: {e}")
            finally:
                feeding.clear()

        def replays(i: int) -> None:
            conn = Connection(d.conn.control, d.conn.events)
            k = i
            while feeding.is_set():  # keep the pressure on for the whole live stretch
                wav = others[k % len(others)]
                k += 1
                try:
                    _, wall, done = timed_replay(conn, wav, False, 600)
                    replays_done.append((wav.name, wall,
                                         None if done is None else done["dropped_windows"]))
                except Exception as e:  # reported, not fatal
                    errors.append(f"replay thread {i}: {e}")
                    return

        say(f"starvation: {LIVE_S:.0f} s live on stdin with 4 concurrent fast replays")
        threads = [threading.Thread(target=feed, daemon=True)]
        threads += [threading.Thread(target=replays, args=(i,), daemon=True) for i in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        status: Event = {}
        deadline = t0 + LIVE_S + 300
        while time.monotonic() < deadline:
            ev = d.conn.receive(sub, 0.1)
            if ev is not None and ev["source"] == "stdin":
                if ev["type"] == "speaker":
                    live_events.append(ev)
                elif ev["type"] == "status" and ev.get("state") == "finished":
                    status = ev  # its last counters: the daemon exits after its input ends
            if status and not any(t.is_alive() for t in threads):
                break
        wall = time.monotonic() - t0
        finished = bool(status)
        sub.close()
    finally:
        d.stop()
    live_keys = [key(e) for e in live_events]
    return {"live_s": round(len(clip) / SAMPLE_RATE, 2), "wall_s": round(wall, 2),
            "live_finished_seen": finished,
            "live_speaker_events": len(live_keys), "alone_speaker_events": len(alone_keys),
            "live_equals_alone": live_keys == alone_keys,
            "dropped_windows": status.get("dropped_windows"),
            "dropped_samples": status.get("dropped_samples"), "state": status.get("state"),
            "concurrent_replays": len(replays_done),
            "replay_dropped_windows": sum(r[2] or 0 for r in replays_done),
            "errors": errors}


# -- output --------------------------------------------------------------------------------

def fmt(v: Any, pct: bool = False, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{100 * v:.{digits}f}%"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(rows: list[dict[str, Any]], time_col: str) -> str:
    head = (f"{'conv':>5} {'audio s':>8} {time_col:>9} {'speed':>7} {'IER':>8} {'strFA':>8} "
            f"{'turnacc':>8} {'flicker':>7} {'dly p50':>7} {'dly p90':>7} {'missed':>9} "
            f"{'turns':>5}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['conversation']!s:>5} {r['audio_s']:>8.1f} {r[time_col.strip()]:>9.2f} "
            f"{r['speed']:>6.1f}x {fmt(r['ier'], True):>8} {fmt(r['stranger_fa_rate'], True):>8} "
            f"{fmt(r['turn_accuracy'], True):>8} {fmt(r['flicker']):>7} "
            f"{fmt(r['delay_median']):>7} {fmt(r['delay_p90']):>7} "
            f"{str(r['missed_changes']) + '/' + str(r['true_changes']):>9} {r['turns']:>5}")
    return "\n".join(lines)


def report(out: dict[str, Any]) -> str:
    ip = out["in_process"]
    lines = [f"model {out['model']}; {len(ip['rows'])} conversations "
             f"(delays in s; missed = changes never labelled right / true changes)",
             "", "in-process (RecognizerConfig()):",
             table([*ip["rows"], ip["combined"]], "compute_s")]
    lines.append(f"  default RecognizerConfig() == daemon's Settings().recognizer(): "
                 f"{'yes' if ip['config_matches_daemon'] else 'NO'}")
    for r in ip["rows"]:
        if r["problems"]:
            lines.append(f"  conv{r['conversation']} enrollment problems: {r['problems']}")
    dm = out.get("daemon")
    if dm:
        lines += ["", "through vggvoxd, fast replay:", table([*dm["rows"], dm["combined"]],
                                                           "wall_s")]
        for r in dm["rows"]:
            lines.append(f"  conv{r['conversation']}: {r['enrolled']} enrolled, "
                         f"{r['speaker_events']} speaker events, dropped windows "
                         f"{fmt(r['dropped_windows'])}"
                         f"{'' if r['finished_seen'] else ' (no finished status seen)'}")
        for p in dm["parity"]:
            lines.append(f"  conv{p['conversation']}: daemon final turns == in-process (16-bit "
                         "PCM, as the daemon is fed): "
                         f"{'yes' if p['identical'] else 'NO'} "
                         f"({p['daemon_finals']} vs {p['inprocess_finals']}; within 1 ms: "
                         f"{'yes' if p['equal_within_1ms'] else 'no'})")
        for r in dm["realtime"]:
            diff = "" if r["identical"] else f", first difference at #{r['first_difference']}"
            lines.append(
                f"  conv{r['conversation']} real-time replay: {r['audio_s']:.1f} s of audio in "
                f"{r['realtime_wall_s']:.2f} s (overshoot {r['realtime_overshoot_s']:+.2f} s; "
                f"fast {r['fast_wall_s']:.2f} s); speaker+turn events identical to fast: "
                f"{'yes' if r['identical'] else 'NO'} ({r['fast_events']} fast, "
                f"{r['realtime_events']} real-time"
                f"{diff}"
                f"); dropped windows {fmt(r['realtime_dropped_windows'])}")
        st = dm["main_status"]
        lines.append(f"  main source (stdin, idle) status: {st['state']}, dropped windows "
                     f"{st['dropped_windows']}, dropped samples {st['dropped_samples']}; "
                     f"windows embedded {st['windows']}; stop: exit {dm['stop']['exit']} in "
                     f"{dm['stop']['seconds']:.2f} s")
    sv = out.get("starvation")
    if sv:
        lines += ["", f"starvation: {sv['live_s']:.0f} s live on stdin at real-time pace beside "
                      f"{sv['concurrent_replays']} fast replays (4 threads), {sv['wall_s']:.1f} s:",
                  f"  live speaker events {sv['live_speaker_events']} vs "
                  f"{sv['alone_speaker_events']} alone (identical: "
                  f"{'yes' if sv['live_equals_alone'] else 'no'}); dropped windows "
                  f"{sv['dropped_windows']}, dropped samples {sv['dropped_samples']}; "
                  f"state {sv['state']}"
                  f"{'' if sv['live_finished_seen'] else ' (no finished status seen)'}; "
                  f"replays' dropped windows {sv['replay_dropped_windows']}"]
        lines += [f"  error: {e}" for e in sv["errors"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the conversations here (kept)")
    parser.add_argument("--model", default="campplus", help="model name or card path")
    parser.add_argument("--realtime", type=int, default=1,
                        help="conversations also replayed at real-time pace (default 1)")
    parser.add_argument("--skip-daemon", action="store_true",
                        help="in-process figures only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    test_list, enroll_list = SPEECH / "test_list.csv", SPEECH / "enroll_list.csv"
    if not (test_list.is_file() and enroll_list.is_file()):
        print(f"bench_turns: no speech data: {test_list} and {enroll_list} are needed",
              file=sys.stderr)
        return 2

    def say(msg: str) -> None:
        print(f"# {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="vggvox-turns-") as name:
        tmp = Path(name)
        out_dir = args.out or tmp / "conversations"
        say(f"building conversations in {out_dir}")
        convs = build_conversations(read_utterances(test_list)[0],
                                    read_utterances(enroll_list)[0], ConversationSpec(), out_dir)
        say("in-process recognition")
        ip = in_process(convs, args.model)
        result: dict[str, Any] = {"model": args.model, "in_process": ip}
        if not args.skip_daemon:
            say("in-process recognition of 16-bit PCM, as the daemon is fed")
            as_daemon = in_process(convs, args.model, as_sent)["finals"]
            config = tmp / "vggvoxd.yaml"
            config.write_text(f"model:\n  name: {args.model}\n  threads: 1\n", encoding="utf-8")
            result["daemon"] = through_daemon(convs, tmp, config, args.realtime, as_daemon,
                                              say)
            result["starvation"] = starvation(convs, tmp, config, say)
    ip.pop("finals")
    print(json.dumps(result, indent=2, default=str) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
