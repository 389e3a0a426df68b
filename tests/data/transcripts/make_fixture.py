"""Writes the conv118 transcript fixture (see README.md here): run from the repository root,
``.venv/bin/python tests/data/transcripts/make_fixture.py``, with ../shared/data present.

The TEXTS below were typed by hand from the utterances' published texts; only the word times
are computed: each utterance's words share its truth speech span(s) in proportion to their
lengths (characters + 1), each word ending 30 ms before the next begins, times rounded inward
to 10 ms, so that every word lies inside a truth segment of its speaker.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import srt
import webvtt
from webvtt.models import Timestamp

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from vggvox.eval.conversations import ConversationSpec, build_conversations  # noqa: E402
from vggvox.eval.lists import read_utterances  # noqa: E402

HERE = Path(__file__).resolve().parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"
SPEC = ConversationSpec(n_conversations=1, duration_s=75.0, n_enrolled=3, n_strangers=1,
                        seed=118)
GAP_S = 0.03

# One entry per utterance; an utterance that the truth splits into several speech spans (a
# pause of 0.5 s or more inside it) gives one text per span, split where the reader paused.
TEXTS: dict[str, list[str]] = {
    "p225_024": ["This is a very common type of bow,",
                 "one showing mainly red and yellow, with little or no green or blue."],
    "p225_003": ["Six spoons of fresh snow peas, five thick slabs of blue cheese, "
                 "and maybe a snack for her brother Bob."],
    "1688-142285-0005": ["You who were always accusing people of being shoppy at Helstone."],
    "fsdd-nicolas_28_58010062": ["five eight zero one zero zero six two"],
    "p228_024": ["This is a very common type of bow, one showing mainly red and yellow, "
                 "with little or no green or blue."],
    "p228_022": ["The actual primary rainbow observed is said to be the effect of "
                 "super-imposition of a number of bows."],
    "p228_008": ["These take the shape of a long round arch, with its path high above, "
                 "and its two ends apparently beyond the horizon."],
    "fsdd-nicolas_04_33493248": ["three three four nine three two four eight"],
    "fsdd-nicolas_35_10727352": ["one zero seven two seven three five two"],
    "p228_023": ["If the red of the second bow falls upon the green of the first, the result "
                 "is to give a bow with an abnormally wide yellow band, since red and green "
                 "light when mixed form yellow."],
    "p228_005": ["She can scoop these things into three red bags, and we will go meet her "
                 "Wednesday at the train station."],
    "fsdd-nicolas_00_66718819": ["six six seven one eight eight one nine"],
    "fsdd-nicolas_03_98991884": ["nine eight nine nine one eight eight four"],
}


def timed_words(text: str, start: float, end: float) -> list[dict[str, object]]:
    tokens = text.split()
    total = sum(len(t) + 1 for t in tokens)
    words, used = [], 0
    for t in tokens:
        a = start + (end - start) * used / total
        used += len(t) + 1
        b = start + (end - start) * used / total - GAP_S
        words.append({"word": " " + t, "start": math.ceil(a * 100 - 1e-6) / 100,
                      "end": math.floor(b * 100 + 1e-6) / 100})
    return words


def segments(conv_dir: Path) -> list[dict[str, object]]:
    index = json.loads((conv_dir / "conversations.json").read_text())["conversations"][0]
    truth = [line.split() for line in (conv_dir / "conv0.rttm").read_text().splitlines()]
    spans = [(float(f[3]), round(float(f[3]) + float(f[4]), 3), f[7]) for f in truth]
    out: list[dict[str, object]] = []
    for u in index["utterances"]:
        mine = [s for s in spans if u["start"] <= s[0] and s[1] <= u["end"] + 1e-6]
        parts = TEXTS[Path(u["path"]).stem]
        assert len(parts) == len(mine) and all(s[2] == u["speaker"] for s in mine), u
        words = [w for part, s in zip(parts, mine, strict=True)
                 for w in timed_words(part, s[0], s[1])]
        out.append({"id": len(out), "start": words[0]["start"], "end": words[-1]["end"],
                    "text": " " + " ".join(parts), "words": words})
    return out


def write_cues(segs: list[dict[str, object]]) -> None:
    subs = [srt.Subtitle(i + 1, timedelta(seconds=float(s["start"])),  # type: ignore[arg-type]
                         timedelta(seconds=float(s["end"])), str(s["text"]).strip())  # type: ignore[arg-type]
            for i, s in enumerate(segs)]
    (HERE / "conv118.srt").write_text(srt.compose(subs), encoding="utf-8")
    vtt = webvtt.WebVTT(captions=[webvtt.Caption(
        str(Timestamp.from_seconds(float(s["start"]))),  # type: ignore[arg-type]
        str(Timestamp.from_seconds(float(s["end"]))),  # type: ignore[arg-type]
        str(s["text"]).strip()) for s in segs])
    (HERE / "conv118.vtt").write_text(vtt.content, encoding="utf-8")


def main() -> None:
    material, _ = read_utterances(SPEECH / "test_list.csv")
    enroll, _ = read_utterances(SPEECH / "enroll_list.csv")
    with tempfile.TemporaryDirectory() as tmp:
        build_conversations(material, enroll, SPEC, tmp)
        segs = segments(Path(tmp))
        (HERE / "conv118.rttm").write_text((Path(tmp) / "conv0.rttm").read_text())
    doc = {"text": "".join(str(s["text"]) for s in segs), "segments": segs, "language": "en"}
    text = json.dumps(doc, indent=1)
    # one word a line: the file is read by people checking the fixture
    text = re.sub(r'\{\s*("word": [^\n]*)\s*("start": [^\n]*)\s*("end": [^\n]*)\s*\}',
                  r"{\1 \2 \3}", text)
    (HERE / "conv118.whisper.json").write_text(text + "\n", encoding="utf-8")
    write_cues(segs)


if __name__ == "__main__":
    main()
