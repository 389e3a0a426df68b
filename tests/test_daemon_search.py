"""The daemon with a large enrolled set: the search index, built off the decision path.

A real store with 1,200 voiceprints (the conversation's two real speakers among
synthetic ones) and ``search.index_above: 1000``: the daemon builds its faiss
index in the background, says so in ``status``, and names the speakers of a
replayed conversation through it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml
from daemon_proc import DaemonProcess
from speakers_fixture import conversation, score_events

from vggvox.audio import load_audio
from vggvox.embedder import Embedder
from vggvox.modelcard import DEFAULT_MODEL
from vggvox.store import ModelId, NewPrints, VoiceprintStore
from vggvox_client.replay import replay_one

OTHERS = 1198


def test_a_large_set_is_searched_through_the_index(tmp_path: Path) -> None:
    convo = conversation(tmp_path)
    embedder = Embedder.from_card(DEFAULT_MODEL)  # the daemon's model
    store = VoiceprintStore(tmp_path / "voiceprints.db")
    model = ModelId.of(embedder.card)
    for name, files in convo.enroll.items():
        emb = np.stack([embedder.embed(load_audio(f)) for f in files])
        store.enroll(name, emb, model, [str(f) for f in files], [1.0] * len(files))
    rng = np.random.default_rng(0)
    others = rng.standard_normal((OTHERS, embedder.card.embedding_size)).astype(np.float32)
    others /= np.linalg.norm(others, axis=1, keepdims=True)
    # One transaction for them all (enroll_many), not 1,198 commits: the same rows.
    store.enroll_many([NewPrints(f"synthetic-{i:04d}", v[None], ["synthetic"], [1.0])
                       for i, v in enumerate(others)], model, force=True)
    cfg = tmp_path / "vggvoxd.yaml"
    cfg.write_text(yaml.safe_dump({"search": {"index_above": 1000}}))
    d = DaemonProcess(tmp_path, args=["--config", str(cfg)]).start()
    try:
        deadline = time.monotonic() + 60
        while (search := d.conn.request("status")["stages"]["search"])["mode"] != "index":
            assert time.monotonic() < deadline, (search, d.output())
            time.sleep(0.2)
        events = replay_one(d.conn, convo.stream, realtime=False, as_json=True,
                            timeout=120, echo=False)
    finally:
        code, _ = d.stop()
    assert code == 0, d.output()
    assert search["voiceprints"] == OTHERS + 2 and search["state"] == "ok"
    assert search["build_s"] is not None
    good, total = score_events(events, convo.turns)
    assert total >= 10 and good / total >= 0.9, (good, total)
    assert "search index over 1200 voiceprints" in d.output()
