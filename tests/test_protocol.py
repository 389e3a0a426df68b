"""The wire between vggvoxd and its clients, pinned byte for byte: the events, and every
control request and reply (``vggvox.protocol``). The maps are as they were before
they were typed: a change here is a change of the protocol, not a refactoring."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest

from vggvox.protocol.errors import RequestError
from vggvox.protocol.events import (
    NamedEvent,
    SpeakerEvent,
    SpeechStartEvent,
    StatusEvent,
    TurnEvent,
    decode,
    encode,
)
from vggvox.protocol.message import Reply, Request
from vggvox.protocol.replies import (
    CalibrationReply,
    CalibrationResetReply,
    CancelReply,
    EnrollReply,
    ListReply,
    NameReply,
    ReloadReply,
    RemoveReply,
    ReplayReply,
    SpeakerEntry,
    StatusReply,
)
from vggvox.protocol.requests import (
    ADMIN,
    READER,
    REQUESTS,
    CalibrationRequest,
    CalibrationResetRequest,
    CancelRequest,
    EnrollRequest,
    ListRequest,
    NameRequest,
    ReloadRequest,
    RemoveRequest,
    ReplayRequest,
    StatusRequest,
    role_of,
)

# ---------------------------------------------------------------- events

def test_event_bytes_are_pinned() -> None:
    ev = SpeakerEvent(source="mic", t_start=1.5, t_end=3.5, time=1700000000.25,
                      speaker="alice", score=0.8125, top=[["alice", 0.8125], ["bob", 0.25]],
                      model="campplus-cn-en-common@1.0", captured=1700000000.0)
    frames = encode(ev, seq=7)
    assert frames[0] == b"speaker"
    assert frames[1].hex() == (
        "8da176" "01" "a3736571" "07" "a474797065" "a7737065616b6572"
        "a6736f75726365" "a36d6963" "a474696d65" "cb41d954fc40100000"
        "a7745f7374617274" "cb3ff8000000000000" "a5745f656e64" "cb400c000000000000"
        "a46e6f6465" "a0"
        "a7737065616b6572" "a5616c696365" "a573636f7265" "cb3fea000000000000"
        "a3746f70" "92" "92a5616c696365cb3fea000000000000" "92a3626f62cb3fd0000000000000"
        "a56d6f64656c" "b9" + b"campplus-cn-en-common@1.0".hex()
        + "a8636170747572656" "4cb41d954fc40000000"
    )
    payload = decode(frames)
    assert list(payload)[:7] == ["v", "seq", "type", "source", "time", "t_start", "t_end"]
    assert payload["speaker"] == "alice" and payload["top"][1] == ["bob", 0.25]


def test_turn_event_bytes_are_pinned() -> None:
    ev = TurnEvent(source="mic", t_start=1.5, t_end=3.5, time=1700000000.25, turn=3,
                   speaker="alice", unknown=None, score=0.8125, confidence=0.75,
                   top=[["alice", 0.8125]], final=True, windows=5, model="m@1",
                   captured=1700000000.0)
    frames = encode(ev, seq=9)
    assert frames[0] == b"turn"
    assert frames[1].hex() == (
        "de0012a17601a373657109a474797065a47475726ea6736f75726365a36d6963"
        "a474696d65cb41d954fc40100000a7745f7374617274cb3ff8000000000000a5"
        "745f656e64cb400c000000000000" "a46e6f6465a0" "a47475726e03a7737065616b6572a5616c69"
        "6365a7756e6b6e6f776ec0a573636f7265cb3fea000000000000aa636f6e6669"
        "64656e6365cb3fe8000000000000a3746f709192a5616c696365cb3fea000000"
        "000000a566696e616cc3a777696e646f777305a56d6f64656ca36d4031a86361"
        "707475726564cb41d954fc40000000"
    )
    payload = decode(frames)
    assert payload["v"] == 1 and payload["unknown"] is None and payload["final"] is True


def test_named_event_bytes_are_pinned() -> None:
    ev = NamedEvent(source="mic", t_start=40.0, t_end=40.0, time=1700000000.25,
                    unknown="unknown-2", speaker="alice", turns=[3, 5])
    frames = encode(ev, seq=10)
    assert frames[0] == b"named"
    assert frames[1].hex() == (
        "8ba17601a37365710aa474797065a56e616d6564a6736f75726365a36d6963a474"
        "696d65cb41d954fc40100000a7745f7374617274cb4044000000000000a5745f65"
        "6e64cb4044000000000000" "a46e6f6465a0" "a7756e6b6e6f776ea9756e6b6e6f776e2d32a7737065"
        "616b6572a5616c696365a57475726e73920305"
    )
    assert decode(frames)["turns"] == [3, 5]


def test_every_event_carries_the_common_fields() -> None:
    for ev in (SpeechStartEvent(source="s", t_start=0, t_end=0),
               StatusEvent(source="s", t_start=0, t_end=0, state="lost")):
        p = decode(encode(ev, 1))
        assert {"v", "seq", "type", "source", "time", "t_start", "t_end"} <= p.keys()


def test_decode_rejects_a_mismatched_topic() -> None:
    frames = encode(SpeechStartEvent(source="s", t_start=0, t_end=0), 1)
    with pytest.raises(ValueError, match="topic"):
        decode([b"speaker", frames[1]])


# ---------------------------------------------------------------- control requests

SESSION = "0123456789abcdef0123456789abcdef"

REQUEST_HEX = {
    "enroll_audio": (
        "85a26f70a6656e726f6c6ca46e616d65a5616c696365a5617564696f91c40401000200a77265706c"
        "616365c2a5666f726365c2"
    ),
    "enroll_audio_all": (
        "87a26f70a6656e726f6c6ca46e616d65a5616c696365a5617564696f92c4020100c4020200a77265"
        "706c616365c3a5666f726365c3a6736f75726365a36d6963a772657175657374a97265712d303030"
        "3031"
    ),
    "enroll_live": (
        "85a26f70a6656e726f6c6ca46e616d65a3626f62a46c697665cb4014000000000000a77265706c61"
        "6365c2a5666f726365c2"
    ),
    "enroll_live_all": (
        "87a26f70a6656e726f6c6ca46e616d65a3626f62a46c697665cb4014000000000000a77265706c61"
        "6365c2a5666f726365c2a6736f75726365a36d6963a772657175657374a97265712d3030303032"
    ),
    "name": (
        "86a26f70a46e616d65a7756e6b6e6f776ea9756e6b6e6f776e2d32a46e616d65a464617665a77265"
        "706c616365c2a5666f726365c2a772657175657374a97265712d3030303033"
    ),
    "name_source": (
        "87a26f70a46e616d65a7756e6b6e6f776ea9756e6b6e6f776e2d32a46e616d65a464617665a77265"
        "706c616365c2a5666f726365c2a772657175657374a97265712d3030303033a6736f75726365a36d"
        "6963"
    ),
    "cancel": (
        "82a26f70a663616e63656ca772657175657374a97265712d3030303033"
    ),
    "remove": (
        "82a26f70a672656d6f7665a46e616d65a56361726f6c"
    ),
    "list": (
        "81a26f70a46c697374"
    ),
    "status": (
        "81a26f70a6737461747573"
    ),
    "reload": (
        "81a26f70a672656c6f6164"
    ),
    "replay": (
        "85a26f70a67265706c6179a773657373696f6ed92030313233343536373839616263646566303132"
        "33343536373839616263646566a56c6162656ca5612e776176a5617564696fc4020100a566696e61"
        "6cc3"
    ),
    "calibration": (
        "81a26f70ab63616c6962726174696f6e"
    ),
    "calibration_source": (
        "82a26f70ab63616c6962726174696f6ea6736f75726365a36d6963"
    ),
    "calibration_reset": (
        "81a26f70b163616c6962726174696f6e5f7265736574"
    ),
    "calibration_reset_source": (
        "82a26f70b163616c6962726174696f6e5f7265736574a6736f75726365a36d6963"
    ),
}
"""Each request's msgpack bytes, as the clients sent them before requests were typed."""

REQUESTS_TYPED: dict[str, Request[Any]] = {
    "enroll_audio": EnrollRequest(name="alice", audio=[b"\x01\x00\x02\x00"]),
    "enroll_audio_all": EnrollRequest(name="alice", audio=[b"\x01\x00", b"\x02\x00"],
                                      replace=True, force=True, source="mic",
                                      request="req-00001"),
    "enroll_live": EnrollRequest(name="bob", live=5.0),
    "enroll_live_all": EnrollRequest(name="bob", live=5.0, source="mic", request="req-00002"),
    "name": NameRequest(unknown="unknown-2", name="dave", request="req-00003"),
    "name_source": NameRequest(unknown="unknown-2", name="dave", request="req-00003",
                               source="mic"),
    "cancel": CancelRequest(request="req-00003"),
    "remove": RemoveRequest(name="carol"),
    "list": ListRequest(),
    "status": StatusRequest(),
    "reload": ReloadRequest(),
    "replay": ReplayRequest(session=SESSION, label="a.wav", audio=b"\x01\x00", final=True),
    "calibration": CalibrationRequest(),
    "calibration_source": CalibrationRequest(source="mic"),
    "calibration_reset": CalibrationResetRequest(),
    "calibration_reset_source": CalibrationResetRequest(source="mic"),
}


@pytest.mark.parametrize("case", sorted(REQUESTS_TYPED))
def test_request_bytes_are_pinned_and_round_trip(case: str) -> None:
    request = REQUESTS_TYPED[case]
    wire = request.to_wire()
    assert msgpack.packb(wire).hex() == REQUEST_HEX[case]
    received = msgpack.unpackb(bytes.fromhex(REQUEST_HEX[case]))
    assert received == wire and list(received) == list(wire)  # the keys' order too
    assert REQUESTS[received["op"]] is type(request)
    assert type(request).from_wire(received) == request


def test_every_op_has_one_request_type_and_its_role() -> None:
    assert set(REQUESTS) == {"enroll", "name", "cancel", "remove", "list", "status",
                             "reload", "replay", "calibration", "calibration_reset"}
    assert {op for op, cls in REQUESTS.items() if cls.role == READER} == {
        "list", "status", "calibration"}
    assert all(cls.op == op and cls.role in (READER, ADMIN) for op, cls in REQUESTS.items())
    assert {cls.op for cls in map(type, REQUESTS_TYPED.values())} == set(REQUESTS)
    assert role_of("status") == READER and role_of("format_disk") == ADMIN


@pytest.mark.parametrize(("wire", "message"), [
    ({"op": "enroll"}, "missing field 'name'"),
    ({"op": "enroll", "name": 5}, "field 'name' must be <class 'str'>, got int"),
    ({"op": "enroll", "name": "a", "replace": 1, "live": 5},
     "field 'replace' must be <class 'bool'>, got int"),
    ({"op": "enroll", "name": "a", "live": True},
     "field 'live' must be (<class 'int'>, <class 'float'>), got bool"),
    ({"op": "enroll", "name": "a"}, "exactly one of 'audio' (list of PCM) or 'live'"),
    ({"op": "enroll", "name": "a", "audio": [b"ab"], "live": 1.0}, "exactly one of"),
    ({"op": "enroll", "name": "a", "audio": []}, "'audio' is empty"),
    ({"op": "enroll", "name": "a", "audio": [b"ab", b"abc"]},
     "audio[1] has an odd number of bytes: not 16-bit PCM"),
    ({"op": "enroll", "name": "a", "audio": ["ab"]},
     "audio[0] must be bytes of 16-bit PCM, got str"),
    ({"op": "enroll", "name": "a", "live": 1.0, "request": "short"},
     "'request' must be 8 to 64 printable characters"),
    ({"op": "enroll", "name": "a", "live": 1.0, "source": 3}, "field 'source'"),
    ({"op": "name", "name": "a"}, "missing field 'unknown'"),
    ({"op": "cancel"}, "missing field 'request' (the id the enrollment was sent with)"),
    ({"op": "cancel", "request": 12345678}, "'request' must be 8 to 64 printable"),
    ({"op": "remove"}, "missing field 'name'"),
    ({"op": "replay", "session": "short"}, "'session' must be 32 to 128 printable"),
    ({"op": "replay", "session": SESSION, "label": "a b"},
     "'label' must be at most 64 printable characters, no spaces"),
    ({"op": "replay", "session": SESSION, "audio": b"abc"},
     "audio has an odd number of bytes"),
    ({"op": "replay", "session": SESSION, "final": "yes"}, "field 'final'"),
    ({"op": "calibration", "source": None}, "field 'source' must be <class 'str'>"),
])
def test_a_malformed_request_is_refused_naming_its_field(wire: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(RequestError) as e:
        REQUESTS[wire["op"]].from_wire(wire)
    assert message in str(e.value) and e.value.code == "bad_request"


def test_a_request_ignores_fields_it_does_not_know() -> None:
    assert RemoveRequest.from_wire({"op": "remove", "name": "x", "later": 1}) == \
        RemoveRequest(name="x")
    assert ReplayRequest.from_wire({"op": "replay", "session": SESSION}) == \
        ReplayRequest(session=SESSION, label="", audio=b"", final=False)


# ---------------------------------------------------------------- control replies

REPLY_HEX = {
    "enroll": (
        "88a26f6bc3a7737065616b6572a5616c696365a6616374696f6ea8617070656e646564aa656d6265"
        "6464696e677303a87370656563685f73cb4010cccccccccccda5616464656401a9737065616b6572"
        "5f73cb4029dc28f5c28f5ca56d6f64656ca36d4031"
    ),
    "name": (
        "8ba26f6bc3a7737065616b6572a464617665a6616374696f6ea56164646564aa656d62656464696e"
        "677301a87370656563685f73cb401a000000000000a5616464656401a9737065616b65725f73cb40"
        "1a000000000000a56d6f64656ca36d4031a7756e6b6e6f776ea9756e6b6e6f776e2d32a6736f7572"
        "6365a36d6963a57475726e73920305"
    ),
    "cancel_unknown": (
        "83a26f6bc3a772657175657374a97265712d3030303033a57374617465a7756e6b6e6f776e"
    ),
    "cancel_done": (
        "85a26f6bc3a772657175657374a97265712d3030303033a57374617465a4646f6e65a6616374696f"
        "6ea56164646564a7737065616b6572a464617665"
    ),
    "cancel_failed": (
        "84a26f6bc3a772657175657374a97265712d3030303033a57374617465a963616e63656c6c6564a5"
        "6572726f72b0746865206469736b2069732066756c6c"
    ),
    "remove": (
        "83a26f6bc3a772656d6f766564a56361726f6ca765726173757265a770656e64696e67"
    ),
    "list": (
        "83a26f6bc3a56d6f64656ca36d4031a8737065616b6572739287a46e616d65a5616c696365aa656d"
        "62656464696e677303a77365636f6e6473cb4029dc28f5c28f5ca56d6f64656ca36d4031a7757064"
        "61746564cb41d954fc40200000aa6c6173745f6865617264c0a764616d61676564c087a46e616d65"
        "a3626f62aa656d62656464696e677301a77365636f6e6473cb4010000000000000a56d6f64656ca3"
        "6d4031a775706461746564cb41d954fc40400000aa6c6173745f6865617264cb41d954fc40900000"
        "a764616d61676564b1726f7720323a206e6f742066696e697465"
    ),
    "status": (  # version 1 with node (additive: the last field)
        "de0016a26f6bc3a6736f75726365a36d6963a57374617465a772756e6e696e67a873747265616d5f"
        "73cb4029000000000000a96f766572666c6f777300af64726f707065645f73616d706c657300af64"
        "726f707065645f77696e646f777301ae64726f707065645f6576656e747300a5717565756502a873"
        "7065616b65727303a777696e646f777328a7656d6265645f73cb3ff4000000000000a56d6f64656c"
        "a36d4031a773636f72696e67aa63616c69627261746564a573746f7265be2f7661722f6c69622f76"
        "6767766f782f766f6963657072696e74732e6462b2656e726f6c6c5f6d61785f617564696f5f73cb"
        "405e000000000000a8756e6b6e6f776e7381a36d696380a77265706c61797300a7736f7572636573"
        "81a36d696387a57374617465a772756e6e696e67a873747265616d5f73cb4029000000000000a96f"
        "766572666c6f777300af64726f707065645f73616d706c657300af64726f707065645f77696e646f"
        "777301a773636f72696e67aa63616c69627261746564a4726f6f6d82a472756c65a172a661646170"
        "7473c2ab636f6e6e656374696f6e7381a66576656e747384a46f70656e01a363617040a961636365"
        "7074696e67c3a5736865647300a673746167657381a8656d62656464657285a57374617465a26f6b"
        "a86661696c7572657300aa6c6173745f6572726f72c0b073696e63655f70726f67726573735f73cb"
        "3fe0000000000000a96c6f73745f6a6f627300a46e6f6465a76b69746368656e"
    ),
    "reload": (
        "82a26f6bc3a8737065616b65727303"
    ),
    "replay": (
        "83a26f6bc3a86163636570746564cd3e80a873747265616d5f73cb3ff0000000000000"
    ),
    "calibration": (
        "82a26f6bc3a7736f757263657381a36d696383a472756c65a172a6616461707473c3a87368696674"
        "5f7364cb3fe0000000000000"
    ),
    "calibration_reset": (
        "83a26f6bc3a5726573657491a36d6963a7736f757263657381a36d696382a472756c65a172a66164"
        "61707473c2"
    ),
}
"""Each reply's msgpack bytes, as the daemon sent them before replies were typed."""

ROOM: dict[str, Any] = {"rule": "r", "adapts": False}
REPLIES_TYPED: dict[str, Reply] = {
    "enroll": EnrollReply(speaker="alice", action="appended", embeddings=3, speech_s=4.2,
                          added=1, speaker_s=12.93, model="m@1"),
    "name": NameReply(speaker="dave", action="added", embeddings=1, speech_s=6.5, added=1,
                      speaker_s=6.5, model="m@1", unknown="unknown-2", source="mic",
                      turns=[3, 5]),
    "cancel_unknown": CancelReply(request="req-00003", state="unknown"),
    "cancel_done": CancelReply(request="req-00003", state="done", action="added",
                               speaker="dave"),
    "cancel_failed": CancelReply(request="req-00003", state="cancelled",
                                 error="the disk is full"),
    "remove": RemoveReply(removed="carol", erasure="pending"),
    "list": ListReply(model="m@1", speakers=[
        SpeakerEntry(name="alice", embeddings=3, seconds=12.93, model="m@1",
                     updated=1700000000.5, last_heard=None, damaged=None),
        SpeakerEntry(name="bob", embeddings=1, seconds=4.0, model="m@1",
                     updated=1700000001.0, last_heard=1700000002.25,
                     damaged="row 2: not finite")]),
    "status": StatusReply(
        source="mic", state="running", stream_s=12.5, overflows=0, dropped_samples=0,
        dropped_windows=1, dropped_events=0, queue=2, speakers=3, windows=40, embed_s=1.25,
        model="m@1", scoring="calibrated", store="/var/lib/vggvox/voiceprints.db",
        enroll_max_audio_s=120.0, unknowns={"mic": {}}, replays=0,
        sources={"mic": {"state": "running", "stream_s": 12.5, "overflows": 0,
                          "dropped_samples": 0, "dropped_windows": 1,
                          "scoring": "calibrated", "room": ROOM}},
        connections={"events": {"open": 1, "cap": 64, "accepting": True, "sheds": 0}},
        stages={"embedder": {"state": "ok", "failures": 0, "last_error": None,
                              "since_progress_s": 0.5, "lost_jobs": 0}}, node="kitchen"),
    "reload": ReloadReply(speakers=3),
    "replay": ReplayReply(accepted=16000, stream_s=1.0),
    "calibration": CalibrationReply(sources={"mic": {"rule": "r", "adapts": True,
                                                     "shift_sd": 0.5}}),
    "calibration_reset": CalibrationResetReply(reset=["mic"], sources={"mic": ROOM}),
}


@pytest.mark.parametrize("case", sorted(REPLIES_TYPED))
def test_reply_bytes_are_pinned_and_round_trip(case: str) -> None:
    reply = REPLIES_TYPED[case]
    wire = reply.to_wire()
    assert msgpack.packb(wire).hex() == REPLY_HEX[case]
    received = msgpack.unpackb(bytes.fromhex(REPLY_HEX[case]))
    assert received == wire and list(received) == list(wire)
    assert type(reply).from_wire(received) == reply


def test_every_request_names_its_reply_type() -> None:
    for cls in REQUESTS.values():
        assert issubclass(cls.reply_type, Reply)
    request = EnrollRequest(name="alice", live=1.0)
    assert request.read_reply(REPLIES_TYPED["enroll"].to_wire()) == REPLIES_TYPED["enroll"]


def test_an_older_daemons_status_reply_reads_without_node() -> None:
    wire = dict(REPLIES_TYPED["status"].to_wire())
    del wire["node"]
    assert StatusReply.from_wire(wire) == dataclasses.replace(REPLIES_TYPED["status"], node="")


def test_an_older_daemons_enroll_reply_still_reads() -> None:
    """``added`` and ``speaker_s`` came with issue 20: without them the reply reads, and
    they stay absent when written back."""
    older = {"ok": True, "speaker": "alice", "action": "appended", "embeddings": 3,
             "speech_s": 4.2, "model": "m@1"}
    reply = EnrollReply.from_wire(older)
    assert reply.added is None and reply.to_wire() == older


def test_a_malformed_reply_is_refused_naming_its_field() -> None:
    with pytest.raises(RequestError, match="missing field 'accepted'"):
        ReplayReply.from_wire({"ok": True, "stream_s": 1.0})
    with pytest.raises(RequestError, match="field 'speakers' must be"):
        ListReply.from_wire({"ok": True, "model": "m", "speakers": {}})
