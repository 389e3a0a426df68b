"""vggvox-client offline, batch-offline, verify and similarity, end to end."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_wav
from vggvox_client.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip().startswith("{") else {}), err


@pytest.fixture
def bad_files(tmp_path: Path, fixtures_dir: Path) -> dict[str, Path]:
    """One file for each kind of bad input."""
    good = (fixtures_dir / "vctk-p225__p225_003.wav").read_bytes()
    files = {
        "missing": tmp_path / "missing.wav",
        "notaudio": tmp_path / "notaudio.wav",
        "truncated": tmp_path / "truncated.wav",
        "empty": write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32)),
        "silent": write_wav(tmp_path / "silent.wav", np.zeros(48000, dtype=np.float32)),
        "short": write_wav(
            tmp_path / "short.wav",
            (0.3 * np.random.default_rng(0).standard_normal(800)).astype(np.float32),
        ),
    }
    files["notaudio"].write_text("not audio at all\n")
    files["truncated"].write_bytes(good[:12000])
    return files


def test_offline_with_every_kind_of_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path,
    bad_files: dict[str, Path],
) -> None:
    speakers = ["ls-3005", "ls-3331", "vctk-p225", "vctk-p226"]
    clips = {s: sorted(fixtures_dir.glob(f"{s}__*.wav")) for s in speakers}
    enroll = tmp_path / "enroll_list.csv"
    enroll.write_text(
        "".join(f"{clips[s][0].name} {s}\n" for s in speakers)
        + f"{bad_files['missing']} ghost\n"  # a speaker with no usable enrollment
        + "this line is malformed\n"
    )
    test = tmp_path / "test_list.csv"
    test.write_text(
        "".join(f"{c.name} {s}\n" for s in speakers for c in clips[s][1:])
        + "".join(f"{p} ls-3005\n" for p in bad_files.values())
        + "onlyonefield\n"
    )
    out = tmp_path / "results.csv"
    code, summary, err = run(capsys, "offline", "--enroll-list", str(enroll), "--test-list",
                             str(test), "--root", str(fixtures_dir), "--out", str(out), "--json")
    assert code == 0
    assert summary["n_scored"] == 8 and summary["top1"] == 1.0
    assert {"top1pct", "top5pct", "top10pct"} <= summary.keys()
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["missing.wav"] == "file not found"
    assert "not readable as audio" in reasons["notaudio.wav"]
    assert reasons["truncated.wav"].startswith("truncated")
    assert reasons["empty.wav"].startswith("empty")
    assert reasons["silent.wav"].startswith("silent")
    assert "0.050 s, shorter than" in reasons["short.wav"]
    assert reasons["ghost"] == "speaker has no usable enrollment utterance"
    malformed = [s for s in summary["skipped"] if s["reason"].startswith("malformed line")]
    assert {(Path(s["path"]).name, s["line"]) for s in malformed} == {
        ("enroll_list.csv", 6), ("test_list.csv", 15)}
    # 6 bad test files + missing enrollment + ghost speaker + 2 malformed lines
    assert summary["n_skipped"] == 10
    assert "file not found" in err and "test_list.csv:15" in err
    # A file skipped from a list is named after the list and its line, as editors expect.
    silent_line = 1 + test.read_text().splitlines().index(f"{bad_files['silent']} ls-3005")
    assert f"skipped {test}:{silent_line}: {bad_files['silent']}: silent" in err, err
    assert f"skipped {enroll}: ghost: speaker has no usable enrollment utterance" in err
    # In the order of the list's lines, though malformed lines are found first.
    test_lines = [int(n) for n in re.findall(rf"^skipped {re.escape(str(test))}:(\d+):", err, re.M)]
    assert len(test_lines) == 7 and test_lines == sorted(test_lines), err
    assert any(s.get("list") == str(test) and s.get("line") == silent_line
               for s in summary["skipped"])

    # The results file is pure CSV (a reader takes every line as a row); the figures
    # are in the summary (stdout, --json).
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    header = list(table[0])
    assert header[:8] == ["filename", "speaker", "rank", "top1", "top2", "top3", "top4", "top5"]
    assert [h for h in header if h.startswith("score:")] == [f"score:{s}" for s in speakers]
    assert len(table) == 8 and all(r["rank"] == "1" for r in table)
    assert all(not r["filename"].startswith("#") for r in table)
    assert summary["top1"] == 1.0


def test_offline_csv_header_form_and_euclidean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, voices: dict[str, list[Path]]
) -> None:
    enroll = tmp_path / "enroll.csv"
    enroll.write_text("filename,speaker\n" + "".join(f"{v[0]},{n}\n" for n, v in voices.items()))
    test = tmp_path / "test.csv"
    test.write_text("filename,speaker\n"
                    + "".join(f"{p},{n}\n" for n, v in voices.items() for p in v[1:]))
    for metric in ("cosine", "euclidean"):
        code, summary, _ = run(capsys, "offline", "--enroll-list", str(enroll), "--test-list",
                               str(test), "--out", str(tmp_path / "r.csv"), "--metric", metric,
                               "--max-sec-enroll", "2.5", "--json")
        assert code == 0 and summary["n_scored"] == 4 and summary["top1"] == 1.0


def test_nothing_scorable_exits_non_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bad_files: dict[str, Path]
) -> None:
    lst = tmp_path / "list.csv"
    lst.write_text(f"{bad_files['missing']} a\n")
    code, summary, err = run(capsys, "offline", "--enroll-list", str(lst), "--test-list",
                             str(lst), "--out", str(tmp_path / "r.csv"), "--json")
    assert code == 1 and summary["n_scored"] == 0 and "file not found" in err


def test_wrong_arguments_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        main(["offline", "--test-list", "t"])
    assert e.value.code == 2
    lst = tmp_path / "l.csv"
    lst.write_text("a.wav a\n")
    code, _, err = run(capsys, "offline", "--enroll-list", str(lst), "--test-list", str(lst),
                       "--out", str(tmp_path / "r"), "--model", "nosuchmodel")
    assert code == 2 and "unknown model 'nosuchmodel'" in err


def test_batch_offline_parallel_and_cached(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    manifest = (fixtures_dir / "manifest.csv").read_text().splitlines()[1:]
    rows = [ln.split(",")[:2] for ln in manifest]
    enroll = tmp_path / "e.csv"
    first_clip = {s: p for p, s in reversed(rows)}
    enroll.write_text("".join(f"{p} {s}\n" for s, p in first_clip.items()))
    test = tmp_path / "t.csv"
    test.write_text("".join(f"{p} {s}\n" for p, s in rows if p not in first_clip.values()))
    cache = tmp_path / "cache"
    argv = ["batch-offline", "--enroll-list", str(enroll), "--test-list", str(test), "--root",
            str(fixtures_dir), "--out", str(tmp_path / "r.csv"), "--cache", str(cache),
            "--workers", "2"]
    code, first, _ = run(capsys, *argv, "--json")
    assert code == 0 and first["n_scored"] == 8
    cached = list(cache.rglob("*.npy"))
    # Keyed by content and use: 8 test clips, and the 4 enrollment clips under the
    # enrollment's own tag (their VAD check must run before one is cached) and as
    # plain whole-file embeddings too.
    assert len(cached) == 16
    results = (tmp_path / "r.csv").read_text()
    code, second, _ = run(capsys, *argv, "--json")
    assert code == 0 and second == first
    assert (tmp_path / "r.csv").read_text() == results

    # verify shares the cache: every trial file, enrollment clips included, was
    # embedded whole by the run above.
    with caplog.at_level(logging.INFO, logger="vggvox_client.jobs"):
        code, _, _ = run(capsys, "verify", "--trials", str(fixtures_dir / "trials_all_pairs.txt"),
                         "--root", str(fixtures_dir), "--cache", str(cache), "--json")
    assert code == 0 and re.search(r"cache: \d+ hits, 0 to compute", caplog.text), caplog.text


def test_verify_on_fixture_trials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path
) -> None:
    det, scores = tmp_path / "det.png", tmp_path / "scores.txt"
    code, summary, _ = run(capsys, "verify", "--trials", str(fixtures_dir / "trials_all_pairs.txt"),
                           "--det", str(det), "--scores", str(scores), "--json")
    assert code == 0
    assert summary["n_trials"] == 66 and summary["eer"] < 5.0
    assert {"mindcf_001", "mindcf_005", "threshold"} <= summary.keys()
    assert det.read_bytes()[:4] == b"\x89PNG"
    first = scores.read_text().splitlines()[0].split()
    assert len(first) == 4 and first[1] in ("0", "1")


def test_verify_reports_bad_trial_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path
) -> None:
    trials = tmp_path / "trials.txt"
    lines = (fixtures_dir / "trials_all_pairs.txt").read_text().splitlines()
    trials.write_text("\n".join([*lines, "1 nothere.wav " + lines[0].split()[1], "garbage"])
                      + "\n")
    code, summary, err = run(capsys, "verify", "--trials", str(trials), "--root",
                             str(fixtures_dir), "--json")
    assert code == 0 and summary["n_trials"] == 66 and summary["n_skipped"] == 2
    assert "trials.txt:67: " in err and "nothere.wav: file not found" in err
    assert "trials.txt:68: malformed" in err


def test_similarity(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                    voices: dict[str, list[Path]]) -> None:
    files = [str(voices["alice"][0]), str(voices["alice"][1]), str(voices["bob"][0])]
    png = tmp_path / "sim.png"
    code, data, _ = run(capsys, "similarity", *files, "--png", str(png), "--json")
    m = np.array(data["matrix"])
    assert code == 0 and m.shape == (3, 3)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    assert m[0, 1] > m[0, 2]  # same voice closer than the other voice
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, _, _ = run(capsys, "similarity", *files)
    assert code == 0


def test_console_script_installed(fixtures_dir: Path) -> None:
    exe = shutil.which("vggvox-client") or str(Path(sys.executable).parent / "vggvox-client")
    done = subprocess.run(
        [exe, "similarity", str(fixtures_dir / "vctk-p225__p225_003.wav"),
         str(fixtures_dir / "vctk-p226__p226_003.wav"), "--model", "ge2e"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "vctk-p225__p225_003.wav" in done.stdout


def test_evaluate_a_conversation_in_process(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path, fixtures_dir: Path) -> None:
    enroll = tmp_path / "enroll.txt"
    enroll.write_text("".join(f"{fixtures_dir}/{n}__{u}.wav {n}\n" for n, u in [
        ("ls-3005", "3005-163389-0000"), ("ls-3005", "3005-163389-0001"),
        ("ls-3331", "3331-159605-0000"), ("ls-3331", "3331-159605-0001")]))
    png = tmp_path / "timeline.png"
    code, out, _ = run(capsys, "evaluate", str(fixtures_dir / "stream_2spk.wav"),
                       "--rttm", str(fixtures_dir / "stream_2spk.rttm"),
                       "--enroll-list", str(enroll), "--png", str(png), "--json")
    assert code == 0 and out["speakers"] == ["ls-3005", "ls-3331"]
    # The fixture's truth marks a 0.45 s pause inside the first turn as speech (no
    # output covers it): that pause alone is about 3% of the scored time.
    assert out["ier"] <= 0.08 and out["turn_accuracy"] == 1.0 and out["true_changes"] == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # In words, each figure says what it counts, so that 7 % beside 100 % reads right.
    assert main(["evaluate", str(fixtures_dir / "stream_2spk.wav"), "--rttm",
                 str(fixtures_dir / "stream_2spk.rttm"), "--enroll-list", str(enroll)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"identification error rate [\d.]+% of [\d.]+ s scored: time, [\d.]+ s "
                     r"with no label \(missed: .*\) and [\d.]+ s with a wrong one", text), text
    assert re.search(r"turn accuracy 100\.00%: turns, 4 of 4 true turns labelled right for "
                     r"most of their time \(the missed edges", text), text
    # A user's mistake is one line, naming the file.
    code = main(["evaluate", str(fixtures_dir / "stream_2spk.wav"), "--rttm",
                 str(tmp_path / "missing.rttm"), "--enroll-list", str(enroll)])
    err = capsys.readouterr().err
    assert code == 2 and "missing.rttm" in err and len(err.strip().splitlines()) == 1


# -- the command line itself: options, validation, interrupts ------------------------------


def test_global_options_before_or_after_the_command() -> None:
    from vggvox_client.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--control", "ipc:///a", "--timeout", "3", "speakers"])
    after = parser.parse_args(["speakers", "--control", "ipc:///a", "--timeout", "3"])
    for args in (before, after):
        assert (args.control, args.timeout, args.log_level) == ("ipc:///a", 3.0, "WARNING")
        assert args.events is None and args.key is None and args.server_key is None
    # After the command wins; an option given only before it is kept.
    mixed = parser.parse_args(["--control", "ipc:///a", "--log-level", "info", "listen",
                               "--control", "ipc:///b"])
    assert (mixed.control, mixed.log_level) == ("ipc:///b", "INFO")
    defaults = parser.parse_args(["status"])
    assert (defaults.timeout, defaults.log_level, defaults.control) == (None, "WARNING", None)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from vggvox import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"vggvox-client {__version__}\n"


@pytest.mark.parametrize("argv, names", [
    (["--log-level", "loud", "speakers"], ["--log-level", "DEBUG", "WARNING"]),
    (["speakers", "--log-level", "loud"], ["--log-level", "DEBUG", "WARNING"]),
    (["listen", "--topic", "speakers"], ["--topic", "speech.start", "turn", "status"]),
])
def test_bad_choice_is_a_one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str],
                                        names: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert e.value.code == 2 and len(errors) == 1 and "Traceback" not in err
    assert all(n in errors[0] for n in names)


def test_topics_are_the_daemons() -> None:
    from vggvox.protocol.events import EVENT_TYPES
    from vggvox_client.daemon_cmds import TOPICS

    assert set(TOPICS) == set(EVENT_TYPES) and "turn" in TOPICS


def test_log_level_any_case() -> None:
    from vggvox_client.cli import build_parser

    assert build_parser().parse_args(["status", "--log-level", "debug"]).log_level == "DEBUG"


def test_batch_offline_shown_once_old_name_kept(capsys: pytest.CaptureFixture[str]) -> None:
    from vggvox_client.cli import build_parser

    help_text = build_parser().format_help()
    listed = [ln.split()[0] for ln in help_text.splitlines() if ln.startswith("    ")]
    assert listed.count("batch-offline") == 1
    assert "batch_offline" not in help_text and "SUPPRESS" not in help_text
    args = build_parser().parse_args(["batch_offline", "--enroll-list", "e", "--test-list",
                                      "t", "--out", "o"])
    assert args.command == "batch_offline" and args.workers >= 1


def test_ctrl_c_is_exit_130_without_traceback(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vggvox_client import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "speakers", interrupted)
    assert main(["speakers"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_listen_without_a_daemon_says_so(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    t0 = time.monotonic()
    code = main(["listen", "--events", f"ipc://{tmp_path}/nothing.sock", "--seconds", "30"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - t0 < 2
    assert f"vggvoxd is not running: no socket at {tmp_path}/nothing.sock" in err


def test_replay_without_a_daemon_says_so_once(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    """A list of files, no daemon: one line and exit 2 at once, not one failure per file."""
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    clip = write_wav(tmp_path / "a.wav", noise)
    (tmp_path / "list.txt").write_text("a.wav\na.wav\na.wav\n")
    t0 = time.monotonic()
    code = main(["replay", str(tmp_path / "list.txt"), "--control",
                 f"ipc://{tmp_path}/nothing.sock", "--events", f"ipc://{tmp_path}/nothing.sock"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - t0 < 2 and clip.exists()
    assert err.strip().splitlines() == [
        f"vggvox-client: error: vggvoxd is not running: no socket at {tmp_path}/nothing.sock "
        "(start it, or see --control/--events)"], err


def test_enroll_honours_timeout(capsys: pytest.CaptureFixture[str], fixtures_dir: Path) -> None:
    clip = sorted(fixtures_dir.glob("ls-3005__*.wav"))[0]
    t0 = time.monotonic()
    # Nothing answers on TCP port 9: the wait is --timeout's, not enroll's default minute.
    code = main(["enroll", "alice", str(clip), "--control", "tcp://127.0.0.1:9",
                 "--timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "within 0.5 s" in err and time.monotonic() - t0 < 10


def test_plural() -> None:
    from vggvox_client.common import plural

    assert [plural(n, "speaker") for n in (0, 1, 2)] == ["0 speakers", "1 speaker",
                                                         "2 speakers"]
    assert plural(1, "embedding", 3) == "  1 embedding"



def test_bad_paths_and_endpoints_are_one_line_errors_before_any_work(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Issue 9: --out/--det/--png into a missing folder, a malformed --control, and a
    replay of something that is neither audio nor a list: one line, exit 2."""
    lst = tmp_path / "l.txt"
    lst.write_text("a.wav alice\n")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    cases = [
        (["offline", "--enroll-list", str(lst), "--test-list", str(lst),
          "--out", str(tmp_path / "nope" / "r.csv")], "folder"),
        (["verify", "--trials", str(lst), "--det", str(tmp_path / "nope" / "d.png")], "folder"),
        (["similarity", str(lst), "--png", str(tmp_path / "nope" / "m.png")], "folder"),
        (["speakers", "--control", "localhost:5561"], "not an endpoint"),
        (["replay", str(tmp_path / "missing.wav"), "--control", "tcp://127.0.0.1:9"],
         "no such file"),
        (["replay", str(junk), "--control", "tcp://127.0.0.1:9"], "neither audio"),
        (["replay", str(lst), "--control", "tcp://127.0.0.1:9"], "a.wav (line 1) is missing"),
        (["replay", str(tmp_path), "--control", "tcp://127.0.0.1:9"], "is a folder"),
        (["replay", str(empty), "--control", "tcp://127.0.0.1:9"], "names no file"),
    ]
    for argv, why in cases:
        with pytest.raises(SystemExit) if why in ("folder", "not an endpoint") else \
                contextlib.nullcontext():
            code = main(argv)
            assert code == 2, argv
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if "error" in ln]  # argparse adds usage
        assert why in err and len(errors) == 1 and "Traceback" not in err, (argv, err)
        if argv[0] == "replay":  # the same prefix as every command's bad input (issue 20)
            assert err.startswith(f"vggvox-client: error: replay {argv[1]}: "), err
