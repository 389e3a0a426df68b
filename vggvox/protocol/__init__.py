"""The wire between vggvoxd and its clients: what both ends share, and nothing else.

No sockets and no daemon settings: typed events (``events``), typed control
requests with their op names and roles (``requests``, one table of them), their
replies (``replies``) and the base classes both build on (``message``), error codes
(``errors``), PCM framing (``pcm``), where a daemon listens (``endpoints``) and
CURVE key files (``keys``). The daemon (``vggvoxd``) and the clients
(``vggvox_client``) import this and the library, and never each other; byte
tests (tests/test_protocol.py) pin the wire.
"""
