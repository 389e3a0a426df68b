"""Open-set figures on speakers the calibration never heard (issue 7's targets).

    .venv/bin/python bench/bench_openset.py [--model campplus-int8] [--skip-daemon]
        [--conversations 6] [--json]

Uses only the ``held`` half of the development speakers (weights/calibrate_shipped.py's
split; the calibration was fitted on the other half):

- **utterances through vggvoxd** (real daemon, ipc endpoints in a temp folder,
  default config: ``scoring.false_accept`` 0.005): the held speakers in two
  halves A and B; A enrolled and every held test utterance replayed, then B
  enrolled instead and again. Each utterance is decided by its final turns
  (the label covering most of their time). Reported: strangers' utterances
  accepted as an enrolled speaker, enrolled speakers' utterances named right;
- **conversations** built from the held speech (4 enrolled, 2 strangers each,
  seed 0), in-process with the default RecognizerConfig: identification error
  rate, strangers' time labelled as an enrolled speaker, and the unknown
  clusters: for each stranger the share of their turn time under their most
  common ``unknown-N`` label (purity) and how many labels they got.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchkit import SPEECH, DaemonProcess, write_lists

from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.eval.conversations import ConversationSpec, build_conversations
from vggvox.eval.engine import enroll_from_list, recognize, turn_timeline
from vggvox.eval.lists import read_utterances
from vggvox.eval.timeline import combine, score_conversation
from vggvox.recording.rttm import read_rttm
from vggvox.stream.recognizer import Recognizer, RecognizerConfig
from vggvox.stream.results import TurnUpdate
from vggvox_client.connection import ClientError
from vggvox_client.enroll import enroll
from vggvox_client.replay import replay_one

MAX_BYTES = 16 * 1024 * 1024


def decide(events: list[dict[str, Any]]) -> str | None:
    """An utterance's label: the one its final turns cover longest (None: unknown)."""
    time: Counter[str | None] = Counter()
    for e in events:
        if e["type"] == "turn" and e["final"]:
            time[e["speaker"]] += e["t_end"] - e["t_start"]
    return time.most_common(1)[0][0] if time else None


def utterances(lists: dict[str, Path], tmp: Path, model: str) -> dict[str, Any]:
    to_enroll, _ = read_utterances(lists["held_enroll"])
    tests, _ = read_utterances(lists["held_test"])
    speakers = sorted({u.speaker for u in to_enroll})
    halves = [set(speakers[0::2]), set(speakers[1::2])]
    strangers = accepted = enrolled = right = 0
    for n, half in enumerate(halves):
        (tmp / f"half{n}").mkdir()
        config = tmp / f"half{n}" / "vggvoxd.yaml"
        config.write_text(f"model:\n  name: {model}\n")
        d = DaemonProcess(tmp / f"half{n}", args=["--config", str(config)]).start()
        try:
            files: dict[str, list[Path]] = defaultdict(list)
            for u in to_enroll:
                if u.speaker in half:
                    files[u.speaker].append(u.path)
            ok = set()
            for name, paths in files.items():
                try:
                    enroll(d.conn, name, paths, None, False, MAX_BYTES)
                    ok.add(name)
                except ClientError as err:  # too little speech: that speaker is a stranger
                    print(f"  not enrolled {name}: {err}", file=sys.stderr)
            for i, u in enumerate(tests):
                label = decide(replay_one(d.conn, u.path, False, True, 60, echo=False))
                if u.speaker in ok:
                    enrolled += 1
                    right += label == u.speaker
                else:
                    strangers += 1
                    accepted += label is not None
                if i % 50 == 0:
                    print(f"  half {n}: {i}/{len(tests)}", file=sys.stderr, flush=True)
        finally:
            d.stop()
    return {"strangers": strangers, "strangers_accepted": accepted,
            "stranger_accept_rate": accepted / max(1, strangers),
            "enrolled": enrolled, "enrolled_right": right,
            "enrolled_right_rate": right / max(1, enrolled)}


def clusters(truth: list[Any], turns: list[TurnUpdate], enrolled: set[str]
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seconds of overlap between true speakers and unknown-N labels, both ways.

    Per stranger: the labels their speech got, how many unknown-N, and the share of
    their unknown-labelled time under the main one. Per unknown-N label: who spoke
    in it, and the share of its time that is its main speaker's.
    """
    per: dict[str, Counter[str]] = defaultdict(Counter)
    per_label: dict[str, Counter[str]] = defaultdict(Counter)
    for seg in truth:
        for t in turns:
            overlap = min(t.t_end, seg.end) - max(t.t_start, seg.start)
            if overlap <= 0:
                continue
            label = t.speaker or t.unknown or "unknown"
            if seg.speaker not in enrolled:
                per[seg.speaker][label] += overlap
            if t.unknown:
                per_label[t.unknown][seg.speaker] += overlap
    out = {}
    for spk, c in per.items():
        unknown = {k: v for k, v in c.items() if k.startswith("unknown-")}
        total = sum(unknown.values())
        out[spk] = {"labels": {k: round(v, 2) for k, v in c.items()},
                    "clusters": len(unknown),
                    "purity": max(unknown.values()) / total if total else 0.0}
    labels = {k: {"speakers": {s: round(v, 2) for s, v in c.items()},
                  "purity": max(c.values()) / sum(c.values())} for k, c in per_label.items()}
    return out, labels


def conversations(lists: dict[str, Path], tmp: Path, count: int, model: str
                  ) -> dict[str, Any]:
    material, _ = read_utterances(lists["held_test"])
    to_enroll, _ = read_utterances(lists["held_enroll"])
    spec = ConversationSpec(n_conversations=count, n_strangers=2, seed=0)
    convs = build_conversations(material, to_enroll, spec, tmp / "convs")
    embedder = Embedder.from_card(model)
    scores, strangers, labels, rows = [], {}, {}, []
    for c in convs:
        vps = enroll_from_list(embedder, c.enroll_list).voiceprints
        results = recognize(Recognizer(embedder, vps, RecognizerConfig()), load_audio(c.wav))
        finals, decisions = turn_timeline(results)
        truth = read_rttm(c.rttm)
        s = score_conversation(truth, set(vps.names), finals, decisions)
        scores.append(s)
        turns = [r for r in results if isinstance(r, TurnUpdate) and r.final]
        cl, by_label = clusters(truth, turns, set(vps.names))
        strangers.update({f"{c.wav.stem}:{k}": v for k, v in cl.items()})
        labels.update({f"{c.wav.stem}:{k}": v for k, v in by_label.items()})
        rows.append({"conversation": c.wav.name, "ier": s.ier,
                     "stranger_fa_rate": s.stranger_fa_rate, "strangers": cl,
                     "unknown_labels": by_label})
    total = combine(scores)
    return {"rows": rows, "ier": total.ier, "stranger_fa_rate": total.stranger_fa_rate,
            "purity_min": min(v["purity"] for v in strangers.values()),
            "purity_mean": sum(v["purity"] for v in strangers.values()) / len(strangers),
            "clusters_per_stranger": Counter(v["clusters"] for v in strangers.values()),
            "label_purity_min": min((v["purity"] for v in labels.values()), default=None),
            "labels": len(labels)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="campplus", help="shipped model name or card path")
    ap.add_argument("--skip-daemon", action="store_true")
    ap.add_argument("--conversations", type=int, default=6)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not (SPEECH / "enroll_list.csv").is_file():
        print(f"bench_openset: no development speech at {SPEECH}", file=sys.stderr)
        return 2
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="vggvox-openset-") as tmp_s:
        tmp = Path(tmp_s)
        lists = write_lists(SPEECH, tmp / "lists")
        out["conversations"] = conversations(lists, tmp, args.conversations, args.model)
        c = out["conversations"]
        print(f"conversations ({args.conversations}, 2 strangers each, held speakers): "
              f"IER {c['ier']:.2%}, strangers' time named {c['stranger_fa_rate']:.2%}, "
              f"cluster purity min {c['purity_min']:.2%} mean {c['purity_mean']:.2%}, "
              f"clusters per stranger {dict(c['clusters_per_stranger'])}; "
              f"{c['labels']} unknown labels, the least pure "
              f"{c['label_purity_min'] or 0:.2%} one speaker's", flush=True)
        if not args.skip_daemon:
            out["utterances"] = u = utterances(lists, tmp, args.model)
            print(f"utterances through vggvoxd (held speakers, half enrolled, both halves): "
                  f"strangers accepted {u['strangers_accepted']}/{u['strangers']} "
                  f"({u['stranger_accept_rate']:.2%}); enrolled right {u['enrolled_right']}/"
                  f"{u['enrolled']} ({u['enrolled_right_rate']:.2%})")
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
