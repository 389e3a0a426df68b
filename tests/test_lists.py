"""List formats: VGGVox space-separated, VGGVoxRealTime CSV, VoxCeleb trials."""

from __future__ import annotations

from pathlib import Path

from vggvox.eval.lists import read_trials, read_utterances


def test_space_separated(tmp_path: Path) -> None:
    f = tmp_path / "enroll_list.csv"
    f.write_text("a/x.wav alice\n\nb/y.flac bob\nbroken line is here\nlonely\n")
    good, bad = read_utterances(f)
    assert [(u.path, u.speaker, u.line) for u in good] == [
        (tmp_path / "a/x.wav", "alice", 1),
        (tmp_path / "b/y.flac", "bob", 3),
    ]
    assert [(e.line_no, e.path) for e in bad] == [(4, str(f)), (5, str(f))]
    assert "expected 'filename speaker'" in str(bad[0]) and ":4:" in str(bad[0])


def test_a_third_column_names_the_room(tmp_path: Path) -> None:
    f = tmp_path / "test_list.csv"
    f.write_text("a/x.wav alice kitchen\nb/y.wav bob\n")
    good, bad = read_utterances(f)
    assert [(u.speaker, u.room) for u in good] == [("alice", "kitchen"), ("bob", None)]
    c = tmp_path / "rooms.csv"
    c.write_text("filename,speaker,room\nx.wav,alice,hall\ny.wav,bob,hall,extra\n")
    good, bad = read_utterances(c)
    assert [(u.speaker, u.room) for u in good] == [("alice", "hall")]
    assert len(bad) == 1 and "(and a room)" in str(bad[0])


def test_csv_with_header_and_root(tmp_path: Path) -> None:
    f = tmp_path / "test_list.csv"
    f.write_text("filename,speaker\nx.wav,alice\ny.wav, bob\nz.wav\n")
    good, bad = read_utterances(f, root="/data")
    assert [(str(u.path), u.speaker) for u in good] == [("/data/x.wav", "alice"),
                                                         ("/data/y.wav", "bob")]
    assert len(bad) == 1 and bad[0].line_no == 4


def test_trials(tmp_path: Path) -> None:
    f = tmp_path / "trials.txt"
    f.write_text("1 a.wav b.wav\n0 a.wav c.wav\n2 a.wav c.wav\n1 a.wav\n")
    good, bad = read_trials(f)
    assert [(t.label, t.enroll.name, t.test.name) for t in good] == [(1, "a.wav", "b.wav"),
                                                                    (0, "a.wav", "c.wav")]
    assert [e.line_no for e in bad] == [3, 4]
    assert "label must be 0 or 1" in str(bad[0])
