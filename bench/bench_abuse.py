"""Issue 8's attacks and faults against a real vggvoxd, measured: figure before, figure now.

    .venv/bin/python bench/bench_abuse.py [--quick] [--only NAME]

Each measurement starts its own daemon in a subprocess (``tests/daemon_proc.py``,
ipc:// endpoints in a temp folder; the access one uses tcp://127.0.0.1) and
attacks it as issue 8 did, reusing the approach of the tests that check the same
thing (tests/test_daemon.py, tests/test_access.py, tests/test_store.py), but it
measures instead of asserting. It prints a Markdown table: item, attack or fault,
figure before (from issue 8), figure now. Measurements (``--only`` takes the name
or the number):

 1 blocking  status/list latency while a 110 s enrollment is embedding
 2 sigterm   SIGTERM while one long clip is inside ONNX, N runs (9; 3 with --quick)
 3 flood     3,000 raw AF_UNIX connections to the control socket, held, then closed,
             under a soft limit of 1,024 open files, then under a hard one too
 4 memory    twelve 16 MiB requests of 15.7 million empty maps, and a 121 s enrollment
 5 live      300 `enroll live=20` requests on a stdin source, then the source ends
 6 second    a second daemon on the same endpoints
 7 privacy   the store's modes under umask 022
 8 erasure   a removed speaker's vectors in the store's files, with and without a reader
 9 access    CURVE keys: a reader, an admin, an unknown key, no key; tcp://0.0.0.0
10 replay    does status show a replay's session token

Issue 20's, against the daemon and the processes around it (rows labelled 20.PART.FINDING):
11 damaged      a store row cut, of another size or NaN: does the daemon start, what it says
12 rofull       `enroll` with the store's file system read-only, then its disk full (root)
13 csrf         the web page: the issue's curl, and a page of another origin in Chromium
14 rebind       the web page: DNS rebinding (Host: evil.example), even with the token
15 local        the web page: a local user the control socket refuses (root: runuser)
16 bombs        the web page: a 2 h FLAC, an 8 Hz WAV, a lying header, three at once
17 streams      the web page: 420 event streams under a 1,024-file limit
18 slow         the web page: 100 slow uploads, 100 clients dripping headers
19 metrics      1,000 idle connections to /metrics under a 1,024-file limit
20 dupkey       a config section given twice
21 fileend      --source file: at the file's end
22 pause        a stdin pipe that pauses 5 s
23 fast         stdin fed faster than real time (stdin, stdin:live)
24 abandon      a replay client killed: its finished event
25 cancel       an enrollment cancelled while it embeds
26 mqtt_outage  the MQTT broker cut or stalled for 48 s: stale turn messages after
27 abandoned    a replay client killed: its Home Assistant entities
28 watch_markup `watch` with names rich takes for markup
29 pipes        every printing command into `head -1`

Issue 25's, against the hub (vggvox-client hub; rows 25.hub.*):
30 hubflood     2,000 raw TCP connections held on its subscribers' port
31 hubcap       --max-subscribers 2 and three known subscribers at once
32 hubsize      an oversize subscription, control request and daemon event
33 hubkeys      an unknown key on both ports, bytes that are not ZMTP

Issue 25's, against the daemon's satellites socket (satellites.listen; rows 25.sat.*):
34 satconn      1,000 raw TCP connections held; six valid keys beyond satellites.max;
                unknown and admin keys
35 satbad       oversize frames, garbage and wrong types after a handshake, a handshake
                never finished, names taken
36 satfast      a satellite 30 s faster than real time; positions jumping wildly
37 satchurn     200 satellites joining under new names (the rooms in memory); one key
                under several names

The measurements live in abuse_process.py (1, 2, 4-6), abuse_flood.py (3),
abuse_store.py (7, 8), abuse_access.py (9, 10), abuse_storehealth.py (11, 12),
abuse_web.py (13-18), abuse_daemon.py (19-25), abuse_bridges.py (26-29),
abuse_hub.py (30-33) and abuse_satellites.py (34-37);
abuse_common.py holds what they share (hubrig.py and satrig.py, the hub's and the
satellites' rigs). Each of the last three also runs alone.

Needs the repository and ../shared/data (the fixtures' LibriSpeech clips); what
needs speech is skipped, saying so, when they are absent.
"""

from __future__ import annotations

import argparse
import sys
import time

import abuse_bridges
import abuse_daemon
import abuse_hub
import abuse_satellites
import abuse_web
from abuse_access import m_access, m_replay
from abuse_common import Measurement, measure, print_table
from abuse_flood import m_flood
from abuse_process import m_blocking, m_live, m_memory, m_second, m_sigterm
from abuse_store import m_erasure, m_privacy
from abuse_storehealth import m_damaged, m_readonly_full

MEASUREMENTS: dict[str, Measurement] = {
    "blocking": m_blocking, "sigterm": m_sigterm, "flood": m_flood, "memory": m_memory,
    "live": m_live, "second": m_second, "privacy": m_privacy, "erasure": m_erasure,
    "access": m_access, "replay": m_replay, "damaged": m_damaged, "rofull": m_readonly_full,
    **abuse_web.MEASUREMENTS, **abuse_daemon.MEASUREMENTS, **abuse_bridges.MEASUREMENTS,
    **abuse_hub.MEASUREMENTS, **abuse_satellites.MEASUREMENTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (SIGTERM: 3)")
    names = list(MEASUREMENTS)
    parser.add_argument("--only", metavar="NAME",
                        help=f"run one measurement: {', '.join(names)} (or its number 1-"
                        f"{len(names)})")
    args = parser.parse_args()
    chosen = names
    if args.only:
        key = args.only.strip().lower()
        if key.isdigit() and 1 <= int(key) <= len(names):
            key = names[int(key) - 1]
        if key not in MEASUREMENTS:
            parser.error(f"--only: unknown measurement {args.only!r}; one of {', '.join(names)}")
        chosen = [key]
    t_all = time.monotonic()
    print_table(measure(MEASUREMENTS, chosen, args.quick))
    print(f"\n{len(chosen)} measurement(s) in {time.monotonic() - t_all:.0f} s"
          f"{' (--quick)' if args.quick else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
