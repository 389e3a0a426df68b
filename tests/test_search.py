"""vggvox.search: exact below search.index_above voiceprints, the faiss index (with exact
re-scoring) at and above it, the same answers as scoring.Scorer; batch-offline through it.

The vectors are synthetic but shaped like speaker embeddings: unit length, around a
shared mean direction (any two voices score above zero), in clusters of similar voices.
A small ``index_above`` (1,000 to 2,000) keeps each index build well under a second.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from vggvox.embedder import l2_normalize
from vggvox.scoring import Scorer
from vggvox.search import Searcher, SearchSettings
from vggvox.store import VoiceprintStore
from vggvox.voiceprints import VoiceprintSet
from vggvox_client.cli import main

DIM = 192


def voices(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """n unit-length voiceprints in 40 clusters around a shared mean direction."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(DIM)
    centres = mean + 1.5 * rng.standard_normal((40, DIM))
    x = centres[rng.integers(0, 40, n)] + 1.2 * rng.standard_normal((n, DIM))
    return [f"spk-{i:06d}" for i in range(n)], l2_normalize(x.astype(np.float32))


def queries(matrix: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Noisy versions of enrolled voiceprints (cosine ~0.6 to their own), and strangers."""
    rng = np.random.default_rng(seed)
    own = matrix[rng.integers(0, len(matrix), n // 2)]
    noisy = own + 0.09 * rng.standard_normal(own.shape)
    strangers = voices(n - n // 2, seed + 100)[1]
    return l2_normalize(np.concatenate([noisy, strangers]).astype(np.float32))


def exact(names: list[str], matrix: np.ndarray, q: np.ndarray, k: int,
          metric: str = "cosine") -> list[list[tuple[str, float]]]:
    scorer = Scorer(metric)
    return [[(m.name, m.score) for m in scorer.top_k(row, names, k)]
            for row in np.atleast_2d(scorer.scores(q, matrix))]


def as_pairs(found: list) -> list[list[tuple[str, float]]]:
    return [[(m.name, m.score) for m in ms] for ms in found]


def test_below_the_threshold_it_is_the_scorer_exactly() -> None:
    names, m = voices(1999)
    q = queries(m, 40)
    for metric in ("cosine", "euclidean"):
        s = Searcher(names, m, metric, SearchSettings(index_above=2000))
        assert not s.indexed
        assert as_pairs(s.search(q, 5)) == exact(names, m, q, 5, metric)
        assert not s.ready  # faiss was never needed


@pytest.mark.parametrize("n", [2000, 2500])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_at_and_past_the_threshold_the_index_is_used_with_exact_scores(
        n: int, metric: str) -> None:
    names, m = voices(n)
    q = queries(m, 60)
    s = Searcher(names, m, metric, SearchSettings(index_above=2000))
    assert s.indexed and not s.ready
    got = as_pairs(s.search(q, 5))
    assert s.ready and s.build_s is not None
    want = exact(names, m, q, 5, metric)
    # Unit-length voiceprints: euclidean ranks as the inner product, so one index
    # serves both; the scores are the metric's own, re-scored exactly.
    assert [g[0][0] for g in got] == [w[0][0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert [n for n, _ in g] == [n for n, _ in w]
        np.testing.assert_allclose([v for _, v in g], [v for _, v in w], atol=1e-5)
    # One query alone, as the daemon asks: the same answer.
    assert as_pairs(s.search(q[0], 5))[0] == got[0]


def test_recall_at_1_against_exact_search() -> None:
    names, m = voices(5000, seed=3)
    q = queries(m, 400, seed=4)
    truth = [w[0][0] for w in exact(names, m, q, 1)]
    for settings, least in ((SearchSettings(index_above=2000), 0.995),
                            # 24 of the 128 lists scanned (by default: all at this size),
                            # half the candidates: still close (99.0 % when written).
                            (SearchSettings(index_above=2000, nprobe=24, rescore=50), 0.97)):
        s = Searcher(names, m, "cosine", settings)
        got = [f[0].name for f in s.search(q, 1)]
        recall = np.mean([a == b for a, b in zip(got, truth, strict=True)])
        assert s.ready and recall >= least, (settings, recall)


def test_euclidean_over_vectors_that_are_not_unit_length_stays_exact(
        caplog: pytest.LogCaptureFixture) -> None:
    names, m = voices(2000)
    m = m * np.linspace(0.5, 2.0, len(m), dtype=np.float32)[:, None]
    q = queries(l2_normalize(m), 20)
    with caplog.at_level(logging.WARNING, logger="vggvox.search"):
        s = Searcher(names, m, "euclidean", SearchSettings(index_above=2000))
    assert not s.indexed and "not unit length" in caplog.text
    assert as_pairs(s.search(q, 3)) == exact(names, m, q, 3, "euclidean")
    # The inner product needs no unit length: cosine (q.v, as Scorer) is indexed.
    assert Searcher(names, m, "cosine", SearchSettings(index_above=2000)).indexed


def test_a_newer_snapshot_reuses_the_index_while_few_changed() -> None:
    names, m = voices(3000)
    s = Searcher(names, m, "cosine", SearchSettings(index_above=2000, max_delta=50))
    s.prepare()
    rng = np.random.default_rng(7)
    # Alice is new, spk-000010 is gone, spk-000020's voiceprint changed.
    alice = l2_normalize(rng.standard_normal(DIM).astype(np.float32))
    changed = l2_normalize(rng.standard_normal(DIM).astype(np.float32))
    prints = {n: m[i] for i, n in enumerate(names)}
    del prints["spk-000010"]
    prints["spk-000020"] = changed
    prints["alice"] = alice
    names2 = sorted(prints)
    m2 = np.stack([prints[n] for n in names2])
    s2 = s.derive(names2, m2)
    assert s2.ready and s2._index is s._index  # no rebuild
    q = np.stack([alice, changed, m[10], *queries(m, 30)])
    got = as_pairs(s2.search(q, 5))
    assert got[0][0][0] == "alice" and got[1][0][0] == "spk-000020"
    assert all(n != "spk-000010" for g in got for n, _ in g)
    want = exact(names2, m2, q, 5)
    assert [g[0][0] for g in got] == [w[0][0] for w in want]
    # A chain of snapshots keeps track: alice removed again.
    names3 = [n for n in names2 if n != "alice"]
    s3 = s2.derive(names3, m2[[names2.index(n) for n in names3]])
    assert s3._index is s._index and s3.search(alice, 1)[0][0].name != "alice"
    # Past max_delta changes, a new index is due (built on the next search).
    names4, m4 = voices(3000, seed=9)
    s4 = s3.derive(names4, m4)
    assert s4.indexed and not s4.ready
    s4.search(m4[0], 1)
    assert s4.ready and s4._index is not s._index


def test_without_build_on_search_only_prepare_builds() -> None:
    names, m = voices(2000)
    s = Searcher(names, m, "cosine", SearchSettings(index_above=2000, build_on_search=False))
    q = queries(m, 10)
    assert as_pairs(s.search(q, 3)) == exact(names, m, q, 3) and not s.ready
    s.prepare()
    assert s.ready


def test_voiceprint_set_searches_through_its_searcher() -> None:
    names, m = voices(2001)
    vps = VoiceprintSet(DIM, search=SearchSettings(index_above=2000))
    for n, v in zip(names[:2000], m[:2000], strict=True):
        vps._prints[n] = v  # a bulk fill; add() republishes every time
    vps.add(names[2000], m[2000])
    vps.prepare_search()
    assert vps.searcher().ready
    q = queries(m, 20)
    got = [[(x.name, x.score) for x in vps.search(v, 5)] for v in q]
    want = exact(names, m, q, 5)
    assert [g[0][0] for g in got] == [w[0][0] for w in want]
    index = vps.searcher()._index
    vps.remove(names[0])  # one change: the same index, without the removed speaker
    assert len(vps) == 2000 and vps.searcher()._index is index
    assert vps.search(m[0], 1)[0].name != names[0]
    assert vps.search_many(q, 2)[0] == vps.search(q[0], 2)
    vps.remove(names[1])  # below the threshold: exact again
    assert not vps.searcher().indexed


@pytest.mark.parametrize("key, value, text", [
    ("index_above", 999, "'search.index_above' must be >= 1000, got 999"),
    ("nprobe", 0, "'search.nprobe' must be >= 1, got 0"),
    ("rescore", -1, "'search.rescore' must be >= 1, got -1"),
    ("train_per_list", 10, "'search.train_per_list' must be >= 39"),
    ("threads", 1.5, "'search.threads' must be an integer, got 1.5"),
    ("max_delta", True, "'search.max_delta' must be an integer, got True"),
    ("build_on_search", 1, "'search.build_on_search' must be true or false, got 1"),
])
def test_settings_errors_name_the_key(key: str, value: object, text: str) -> None:
    with pytest.raises(ValueError, match=text.replace(".", r"\.").replace("(", r"\(")):
        SearchSettings(**{key: value})  # type: ignore[arg-type]


def test_pq_codes_must_divide_the_dimension() -> None:
    names, m = voices(2000)
    s = Searcher(names, m, "cosine", SearchSettings(index_above=2000, pq_m=50))
    with pytest.raises(ValueError, match=r"'search\.pq_m' must divide the dimension 192"):
        s.prepare()


def test_batch_offline_beyond_the_threshold_names_the_same_speakers(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, fixtures_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixtures' real speakers among 1,200 synthetic voiceprints drawn around them
    (a store of 1,200 enrollments would take 10 s to write): exact, then the index."""
    manifest = (fixtures_dir / "manifest.csv").read_text().splitlines()[1:]
    rows = [ln.split(",")[:2] for ln in manifest]
    first = {s: p for p, s in reversed(rows)}
    enroll, test = tmp_path / "e.csv", tmp_path / "t.csv"
    enroll.write_text("".join(f"{p} {s}\n" for s, p in first.items()))
    test.write_text("".join(f"{p} {s}\n" for p, s in rows if p not in first.values()))
    real = VoiceprintStore.voiceprints

    def padded(self: VoiceprintStore, model: object) -> tuple[list[str], np.ndarray]:
        names, prints = real(self, model)  # type: ignore[arg-type]
        rng = np.random.default_rng(0)
        fake = prints[rng.integers(0, len(prints), 1200)] + 0.07 * rng.standard_normal(
            (1200, prints.shape[1]))
        return (names + [f"synthetic-{i:04d}" for i in range(1200)],
                np.concatenate([prints, l2_normalize(fake.astype(np.float32))]))

    monkeypatch.setattr(VoiceprintStore, "voiceprints", padded)
    base = ["batch-offline", "--enroll-list", str(enroll), "--test-list", str(test), "--root",
            str(fixtures_dir), "--cache", str(tmp_path / "cache"), "--workers", "1", "--json"]
    results = {}
    for label, extra in (("exact", []), ("index", ["--index-above", "1000"])):
        out = tmp_path / f"{label}.csv"
        assert main([*base, "--out", str(out), *extra]) == 0
        summary = json.loads(capsys.readouterr().out)
        with out.open() as f:
            results[label] = (summary, list(csv.DictReader(f)))
    (s_exact, r_exact), (s_index, r_index) = results["exact"], results["index"]
    assert s_exact["n_speakers"] == s_index["n_speakers"] == 1204
    assert [r["top1"] for r in r_index] == [r["top1"] for r in r_exact]
    assert [r["rank"] for r in r_index] == [r["rank"] for r in r_exact]
    for a, b in zip(r_index, r_exact, strict=True):
        assert abs(float(a["top1_score"]) - float(b["top1_score"])) < 1e-3
    assert any(k.startswith("score:") for k in r_exact[0])
    assert not any(k.startswith("score:") for k in r_index[0])  # only the top 5
    # top-1 % (13 candidates) and top-5 % (61) lie within the 100 re-scored; top-10 %
    # (121) does not: not computed.
    assert s_index["top1"] == s_exact["top1"] and s_index["top5pct"] == s_exact["top5pct"]
    assert s_index["top10pct"] is None and s_exact["top10pct"] is not None

    code = main([*base[:-1], "--out", str(tmp_path / "x.csv"), "--nprobe", "0"])
    assert code == 2 and "--nprobe must be >= 1, got 0" in capsys.readouterr().err


def test_an_index_built_while_the_set_changed_is_taken_over() -> None:
    """The daemon's way: no build on search, prepare_search in another thread. A change
    while it builds must not cost a second build."""
    names, m = voices(2002)
    vps = VoiceprintSet(DIM, search=SearchSettings(index_above=2000, build_on_search=False))
    for n, v in zip(names[:2001], m[:2001], strict=True):
        vps._prints[n] = v
    vps.add(names[2001], m[2001])
    building = vps.searcher()  # what the other thread was building...
    vps.remove(names[5])  # ...when this changed
    assert not vps.searcher().ready  # decisions meanwhile: exact
    assert vps.search(m[5], 1)[0].name != names[5]
    building.prepare()
    assert vps._adopt(building)
    now = vps.searcher()
    assert now.ready and now._index is building._index and len(now.names) == 2001
    assert vps.search(m[5], 1)[0].name != names[5]
    vps.prepare_search()  # nothing left to build
    assert vps.searcher() is now
