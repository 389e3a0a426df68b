"""The smallest RTSP server that FFmpeg's RTSP client plays from, for tests: an IP
camera's audio on 127.0.0.1, L16 at 16 kHz over RTP interleaved in the RTSP
connection (RFC 2326 10.12), as a camera serves ``rtsp_transport=tcp``.

FFmpeg has an RTSP client and a listen mode (a publisher pushes to a reader), but
no server that a client pulls from, and none is installed here: this answers
OPTIONS, DESCRIBE, SETUP and PLAY, then sends ``clip`` at real-time pace, then
silence, until stopped. Not a server for anything else.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np

RATE = 16000
BLOCK = 320
SDP = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 L16/16000/1\r\na=control:track0\r\n")


class RtspServer:
    def __init__(self, clip: np.ndarray, port: int = 0) -> None:
        self.clip = clip
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/stream1"
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                if self._answer(conn, head.decode("latin-1")):
                    self._play(conn)
                    return
        except OSError:
            return
        finally:
            conn.close()

    def _answer(self, conn: socket.socket, request: str) -> bool:
        """Reply to one request; True once it was PLAY (the stream follows)."""
        lines = request.split("\r\n")
        method = lines[0].split(" ", 1)[0]
        cseq = next((ln.split(":", 1)[1].strip() for ln in lines
                     if ln.lower().startswith("cseq:")), "0")
        headers = {"OPTIONS": "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n",
                   "DESCRIBE": (f"Content-Base: {self.url}/\r\nContent-Type: application/sdp"
                                f"\r\nContent-Length: {len(SDP)}\r\n"),
                   "SETUP": "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
                            "Session: 1234\r\n",
                   "PLAY": "Session: 1234\r\nRange: npt=0.000-\r\n"}.get(method, "")
        body = SDP if method == "DESCRIBE" else ""
        conn.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{headers}\r\n{body}".encode())
        return method == "PLAY"

    def _play(self, conn: socket.socket) -> None:
        t0, pos, seq = time.monotonic(), 0, 0
        while not self._stop.is_set():
            block = self.clip[pos:pos + BLOCK] if pos < len(self.clip) else np.zeros(0)
            block = np.pad(block, (0, BLOCK - len(block))).astype(">i2")
            rtp = struct.pack(">BBHII", 0x80, 97, seq & 0xFFFF, pos & 0xFFFFFFFF,
                              0x5EED) + block.tobytes()
            conn.sendall(struct.pack(">cBH", b"$", 0, len(rtp)) + rtp)
            seq, pos = seq + 1, pos + BLOCK
            self._stop.wait(max(0.0, t0 + pos / RATE - time.monotonic()))

    def stop(self) -> None:
        """Go away: the listener closed and every session cut."""
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
