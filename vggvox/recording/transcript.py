"""Transcripts with timestamps, read into words with times.

Four inputs: an openai-whisper JSON (``segments`` with ``words``, each with
``start`` and ``end``), a WhisperX JSON (the same shape, but its aligner leaves
numbers and symbols without times: those are interpolated between their
neighbours, and the transcript says how many), or an SRT or WebVTT file, read
by the maintained parsers ``srt`` and ``webvtt-py``. A cue has no word times:
its words are spread over the cue by their lengths in characters, and every
word remembers its cue, so that the cue boundaries of the input are kept.

Bad input raises VggvoxError with one line: the file, where (segment, word,
cue or line) when that is known, and why.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from vggvox.errors import VggvoxError

GIVEN = "word"
"""The transcript gave the word's own times."""
INTERPOLATED = "interpolated"
"""The word had no times (WhisperX leaves numbers and symbols so): placed between its neighbours."""
SPREAD = "cue"
"""Only its cue (or segment) had times: the word's share of the cue, by its length."""

FORMATS = ("whisper", "whisperx", "srt", "vtt")
_TAGS = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # HTML-like cue tags and SSA overrides ({\an8})


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    cue: int
    """The index of the input segment or cue the word came from (0-based)."""
    timing: str = GIVEN
    """GIVEN, INTERPOLATED or SPREAD: where its times come from."""


@dataclass(frozen=True)
class Transcript:
    path: str
    format: str
    """One of FORMATS."""
    words: tuple[Word, ...]
    notes: tuple[str, ...] = ()
    """What the reading had to make up, for the user (interpolated times ...)."""


def _fail(path: str, where: str, reason: str) -> VggvoxError:
    place = f"{path}: {where}: " if where else f"{path}: "
    return VggvoxError(place + " ".join(reason.split()))  # one line, whatever the reason held


def _seconds(value: Any, path: str, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise _fail(path, where, f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _span(start: float, end: float, path: str, where: str) -> tuple[float, float]:
    if end < start:
        raise _fail(path, where, f"ends ({end:.3f} s) before it starts ({start:.3f} s)")
    return start, end


def spread(texts: list[str], start: float, end: float, cue: int,
           timing: str = SPREAD) -> list[Word]:
    """Words that share [start, end] in proportion to their lengths in characters."""
    total = sum(len(t) for t in texts)
    words, used = [], 0
    for t in texts:
        a = start + (end - start) * used / total
        used += len(t)
        words.append(Word(round(a, 3), round(start + (end - start) * used / total, 3), t, cue,
                          timing))
    return words


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise _fail(str(path), "", f"cannot read the transcript: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise _fail(str(path), f"line {line}", f"not UTF-8 text (byte {e.start})") from None


def read_transcript(path: str | Path, fmt: str | None = None) -> Transcript:
    """The words of a transcript file; ``fmt`` (one of FORMATS) or else the suffix
    says how to read it (``.json``: Whisper or WhisperX, told apart by content)."""
    p = Path(path)
    kind = fmt or {".json": "whisper", ".srt": "srt", ".vtt": "vtt"}.get(p.suffix.lower())
    if kind not in FORMATS:
        raise _fail(str(p), "", f"unknown transcript format {fmt or p.suffix!r}: "
                                f"use a .json (Whisper or WhisperX), .srt or .vtt file")
    text = _read_text(p)
    if kind == "srt":
        return _read_srt(str(p), text)
    if kind == "vtt":
        return _read_vtt(str(p), text)
    return _read_whisper(str(p), text)


# --- Whisper and WhisperX JSON -------------------------------------------------------------


def _segments(path: str, text: str) -> list[Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"line {e.lineno} column {e.colno}", f"not JSON: {e.msg}") from None
    segments = doc.get("segments") if isinstance(doc, dict) else None
    if not isinstance(segments, list) or not segments:
        raise _fail(path, "", "no segments: expected a Whisper or WhisperX JSON "
                              '({"segments": [{"start", "end", "text", "words": [...]}]})')
    return segments


def _read_whisper(path: str, text: str) -> Transcript:
    words: list[Word] = []
    untimed = 0
    whisperx = False
    for i, seg in enumerate(_segments(path, text)):
        where = f"segment {i}"
        if not isinstance(seg, dict):
            raise _fail(path, where, "a segment must be an object with start, end and text")
        start, end = _span(_seconds(seg.get("start"), path, where, "start"),
                           _seconds(seg.get("end"), path, where, "end"), path, where)
        raw = seg.get("words")
        if raw is None:  # transcribed without word_timestamps: the segment is a cue
            texts = str(seg.get("text", "")).split()
            words += spread(texts, start, end, i) if texts else []
            continue
        if not isinstance(raw, list):
            raise _fail(path, where, "words must be a list")
        seg_words, missing = _segment_words(raw, start, end, i, path)
        words += seg_words
        untimed += missing
        whisperx = whisperx or missing > 0 or any(isinstance(w, dict) and "score" in w
                                                  for w in raw)
    if not words:
        raise _fail(path, "", "the segments hold no words")
    notes = (f"{untimed} word(s) had no times (WhisperX leaves numbers and symbols so): "
             "interpolated between their neighbours",) if untimed else ()
    return Transcript(path, "whisperx" if whisperx else "whisper", tuple(words), notes)


def _segment_words(raw: list[Any], seg_start: float, seg_end: float, cue: int,
                   path: str) -> tuple[list[Word], int]:
    """One segment's words; runs of words without times fill the time between the
    timed words around them (or the segment's edge) by length."""
    timed: list[tuple[str, float, float] | str] = []
    for j, w in enumerate(raw):
        where = f"segment {cue} word {j}"
        if not isinstance(w, dict) or not isinstance(w.get("word"), str):
            raise _fail(path, where, 'a word must be an object with a "word" string')
        token = w["word"].strip()
        if not token:
            continue
        if w.get("start") is None or w.get("end") is None:
            timed.append(token)
            continue
        a, b = _span(_seconds(w["start"], path, where, "start"),
                     _seconds(w["end"], path, where, "end"), path, where)
        timed.append((token, a, b))
    return _interpolate(timed, seg_start, seg_end, cue)


def _interpolate(timed: list[tuple[str, float, float] | str], seg_start: float,
                 seg_end: float, cue: int) -> tuple[list[Word], int]:
    words: list[Word] = []
    run: list[str] = []
    missing = 0
    for item in [*timed, None]:
        if isinstance(item, str):
            run.append(item)
            continue
        if run:
            a = words[-1].end if words else seg_start
            b = item[1] if item is not None else max(seg_end, a)
            words += spread(run, a, max(a, b), cue, INTERPOLATED)
            missing += len(run)
            run = []
        if item is not None:
            words.append(Word(item[1], item[2], item[0], cue))
    return words, missing


# --- SRT and WebVTT cues -------------------------------------------------------------------


def _timing_line(text: str, cue: int) -> str:
    """Where cue ``cue`` (0-based) is: its timing line is the file's cue-th line with an arrow."""
    arrows = [n for n, line in enumerate(text.splitlines(), 1) if "-->" in line]
    return f"cue {cue + 1} (line {arrows[cue]})" if cue < len(arrows) else f"cue {cue + 1}"


def _cue_words(content: str, start: float, end: float, cue: int) -> list[Word]:
    texts = content.split()
    return spread(texts, start, end, cue) if texts else []


def _read_srt(path: str, text: str) -> Transcript:
    try:
        subtitles = list(srt.parse(text))
    except srt.SRTParseError as e:
        line = text.count("\n", 0, e.expected_start) + 1
        raise _fail(path, f"line {line}", f"not SRT: unexpected {e.unmatched_content[:40]!r}") \
            from None
    except ValueError as e:  # srt.TimestampParseError among them
        raise _fail(path, "", f"not SRT: {e}") from None
    if not subtitles:
        raise _fail(path, "", "no cues: an SRT file holds numbered blocks with "
                              "'00:00:01,000 --> 00:00:02,500' timings")
    words: list[Word] = []
    for i, sub in enumerate(subtitles):
        a, b = _span(sub.start.total_seconds(), sub.end.total_seconds(), path,
                     _timing_line(text, i))
        words += _cue_words(_TAGS.sub("", sub.content), a, b, i)
    return Transcript(path, "srt", tuple(words))


def _read_vtt(path: str, text: str) -> Transcript:
    try:
        captions = webvtt.from_string(text, strict=True).captions
    except MalformedFileError as e:
        raise _fail(path, "line 1", f"not WebVTT: {e} (the file must start with 'WEBVTT')") \
            from None
    except MalformedCaptionError as e:
        block = re.search(r"\['([^']*)'", str(e))  # the message quotes the bad block's lines
        at = text.find(block.group(1)) if block else -1
        where = f"line {text.count(chr(10), 0, at) + 1}" if at >= 0 else ""
        raise _fail(path, where, f"not WebVTT: {str(e)[:100]}") from None
    if not captions:
        raise _fail(path, "", "no cues: a WebVTT file holds '00:00:01.000 --> 00:00:02.500' cues")
    words: list[Word] = []
    for i, c in enumerate(captions):
        a, b = _span(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000,
                     path, _timing_line(text, i))
        # webvtt-py strips the cue tags but leaves character references (&amp; &lt;) as written
        words += _cue_words(html.unescape(c.text), a, b, i)
    return Transcript(path, "vtt", tuple(words))
