"""The real vggvoxd with one fault injected into one stage, for tests/test_faults.py.

Run it by path in place of ``-m vggvoxd.main``, with the same arguments. The
fault is chosen by the environment, so that the product code carries no hooks:

    VGGVOX_FAULT=TARGET:CALLS[:hang]

    TARGET  decide  the recognizer's decider (runs in the embedder stage)
            encode  the events publisher's encoding of an event (the events stage)
    CALLS   N       the Nth call raises
            N-M     calls N to M raise
            N+      the Nth call and every later one raise
    hang            those calls block for ever instead of raising (a stage that
                    hangs: systemd's watchdog, tests/test_service.py)
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import vggvoxd.publisher
from vggvox.stream.recognizer import Recognizer
from vggvoxd.main import main


def failing_calls(spec: str) -> Callable[[int], bool]:
    """Whether call number n (from 1) fails, for CALLS as above."""
    if spec.endswith("+"):
        first = int(spec[:-1])
        return lambda n: n >= first
    lo, _, hi = spec.partition("-")
    return lambda n: int(lo) <= n <= int(hi or lo)


def inject(target: str, fails: Callable[[int], bool], hang: bool = False) -> None:
    calls = 0
    count = threading.Lock()  # the publisher's encode runs in one thread, decide in another

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def faulty(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            with count:
                calls += 1
                n = calls
            if fails(n) and hang:
                while True:  # stuck, as a deadlocked or spinning stage is
                    time.sleep(3600)
            if fails(n):
                raise RuntimeError(f"injected fault: {target} call {n}")
            return fn(*args, **kwargs)
        return faulty

    if target == "decide":
        Recognizer.decide = wrap(Recognizer.decide)  # type: ignore[method-assign]
    elif target == "encode":
        vggvoxd.publisher.encode = wrap(vggvoxd.publisher.encode)
    else:
        raise SystemExit(f"fault_daemon: unknown VGGVOX_FAULT target {target!r}")


if __name__ == "__main__":
    target, _, calls = os.environ.get("VGGVOX_FAULT", "").partition(":")
    calls, _, mode = calls.partition(":")
    if target:
        inject(target, failing_calls(calls or "1+"), hang=mode == "hang")
    sys.exit(main())
