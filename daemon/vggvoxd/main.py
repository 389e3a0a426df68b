"""``vggvoxd``: command line, logging, signals."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import signal
import sys
import sysconfig
from pathlib import Path
from types import FrameType

from vggvox import __version__, logsetup
from vggvox.errors import VggvoxError
from vggvox.storeopen import store_argument
from vggvoxd import calibration_overrides, config
from vggvoxd.access import check_exposure, group_id
from vggvoxd.connlimit import cap_for, open_files
from vggvoxd.curveauth import Curve
from vggvoxd.daemon import Daemon
from vggvoxd.livesources import check_specs
from vggvoxd.source_schemes import DEFAULT, check_source, source_help

log = logging.getLogger("vggvoxd")

EXAMPLES = """\
examples:
  vggvoxd                                   # the default microphone, the user's store
  vggvoxd --device 2 --log-level info       # input device 2 of --list-devices
  vggvoxd --source file:meeting.wav         # a file at real-time pace, then exit
  arecord -f S16_LE -r 16000 -c 1 | vggvoxd --source stdin:live   # a live capture
  ffmpeg -i talk.mp3 -f s16le -ar 16000 -ac 1 - | vggvoxd --source stdin   # lossless, then exit
  vggvoxd --source rtsp://cam.lan/stream1   # an IP camera's audio, reconnected when lost
  vggvoxd --store postgresql://vggvox@db.lan/vggvox   # one store shared by several daemons
  vggvoxd --print-config > ~/.config/vggvox/vggvoxd.yaml

Exit status: 0 stopped (SIGTERM, SIGINT, or the end of --source file: or stdin;
a replay or an enrollment under way is let finish first; a microphone or a
sources: list never ends); 1 cannot start (another vggvoxd serves the endpoints, the store
holds another model's voiceprints) or a stage kept failing; 2 bad settings or
arguments."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vggvoxd", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Real-time speaker identification daemon: microphone in, ZeroMQ events "
                    "out.\nOptions override the config file's keys.", epilog=EXAMPLES)
    p.add_argument("--config", metavar="FILE",
                   help="YAML settings (default: ~/.config/vggvox/vggvoxd.yaml, then "
                        "/etc/vggvox/vggvoxd.yaml, then built-in defaults)")
    p.add_argument("--events", metavar="ENDPOINT",
                   help="ZeroMQ PUB endpoint, e.g. tcp://127.0.0.1:5560 (default: "
                        "the config's, else ipc://RUNTIME/events.sock, RUNTIME the systemd or "
                        "user runtime folder)")
    p.add_argument("--control", metavar="ENDPOINT",
                   help="ZeroMQ control endpoint, e.g. ipc:///run/vggvox/c.sock (default: "
                        "the config's, else ipc://RUNTIME/control.sock)")
    p.add_argument("--store", metavar="FILE|URL", type=store_argument,
                   help="voiceprint store: a SQLite file, sqlite:PATH or a postgresql:// "
                        "URL (default: the config's, else "
                        "$STATE_DIRECTORY/voiceprints.db under systemd, else "
                        "~/.local/share/vggvox/voiceprints.db)")
    p.add_argument("--device", metavar="DEVICE",
                   help="input device: a name (or part of one) or an index of --list-devices "
                        "(default: the config's, else the system's)")
    p.add_argument("--source", metavar="SOURCE", help=source_help())
    p.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR, any case "
                                       "(default: the config's, else INFO)")
    p.add_argument("--socket-group", metavar="GROUP",
                   help="group whose members may use the ipc sockets (made 0660; "
                        "security.group)")
    p.add_argument("--list-devices", action="store_true",
                   help="list the audio input devices (index, name, channels, rate) and exit")
    p.add_argument("--version", action="version", version=f"vggvoxd {__version__}")
    p.add_argument("--print-config", action="store_true",
                   help="print the config template (every key, its default and a comment), "
                        "e.g. > ~/.config/vggvox/vggvoxd.yaml, and exit")
    p.add_argument("--print-unit", action="store_true",
                   help="print the systemd unit (edit its paths to this installation), and exit")
    p.add_argument("--allow-empty", action="store_true",
                   help="start even if the store holds another model's voiceprints (nobody "
                        "is then enrolled; without it vggvoxd refuses to start)")
    return p


def settings_from(args: argparse.Namespace) -> tuple[config.Settings, str]:
    """The settings, and the config file they came from (for messages)."""
    settings, found = config.load(args.config)
    if args.events or args.control:
        settings = config.override(settings, "endpoints",
                                   events=args.events or settings.endpoints.events,
                                   control=args.control or settings.endpoints.control)
    if args.store:
        settings = config.override(settings, "store", path=args.store)
    if args.source is not None or args.device is not None:
        settings = dataclasses.replace(settings, sources=())  # the command line's one source
    if args.device is not None:
        device: str | int = int(args.device) if args.device.isdigit() else args.device
        settings = config.override(settings, "audio", device=device)
    if args.socket_group:
        settings = config.override(settings, "security", group=args.socket_group)
    if args.log_level:
        config.parse({"logging": {"level": args.log_level}}, "--log-level")  # validates it
        settings = config.override(settings, "logging", level=args.log_level.upper())
    log.debug("settings from %s", found or "built-in defaults")
    return settings, str(found or "config")


WANTED_FILES = 65536
"""Open files the daemon asks for: each client connection costs one, and libzmq
aborts the whole process when it runs out; ``connlimit.py`` caps them below it."""


def raise_file_limit() -> int:
    """Raise the soft open-files limit towards WANTED_FILES (as far as the hard
    limit allows); warn when it stays low. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANTED_FILES if hard == resource.RLIM_INFINITY else min(WANTED_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft != resource.RLIM_INFINITY and soft < 4096:
        log.warning("only %d open files allowed (hard limit): vggvoxd takes at most %d client "
                    "connections at a time and sheds a flood beyond; raise the limit with "
                    "LimitNOFILE=65536 in its unit, or 'ulimit -Hn 65536' (as root) before "
                    "starting it", soft, cap_for(soft, open_files()))
    return soft


def preflight(settings: config.Settings, where: str) -> None:
    """Settings that would stop the daemon, checked before the model loads: one line
    and exit 2, like any other configuration error. Here, not in the config parser:
    the clients parse the same file and need not read the daemon's files."""
    logsetup.configure(settings.logging.level, sys.stdout)
    check_exposure(settings)
    if settings.security.group:
        group_id(settings.security.group)
    Curve(settings.security)  # reads and checks the keys
    calibration_overrides.check(settings, where)


def list_devices() -> int:
    from vggvoxd.sources import input_devices

    devices = input_devices()
    if not devices:
        print("no audio input devices (PortAudio sees none: is a sound server running?)")
    for d in devices:
        print(f"{d['index']:3d}  {d['name']}  ({d['maxInputChannels']} channels, "
              f"{d['defaultSampleRate']:.0f} Hz)")
    return 0


def shipped_file(name: str) -> Path:
    """The config template or the unit file: the checkout's own (config/, systemd/) when
    this package runs from one, else the copy pip installed under <prefix>/share/vggvox."""
    folder = "config" if name.endswith(".yaml") else "systemd"
    checkout = Path(__file__).resolve().parents[2] / folder / name
    if checkout.is_file():
        return checkout
    return Path(sysconfig.get_path("data")) / "share" / "vggvox" / name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_devices:  # before the settings and the model: a quick look
        return list_devices()
    if args.print_config or args.print_unit:
        sys.stdout.write(shipped_file("vggvoxd.yaml" if args.print_config
                                      else "vggvoxd.service").read_text())
        return 0
    try:
        settings, where = settings_from(args)
        if args.source is not None:
            check_source(args.source)
        check_specs(settings, args.source or DEFAULT)
        preflight(settings, where)
    except (VggvoxError, ValueError) as e:
        print(f"vggvoxd: {e}", file=sys.stderr)
        return 2
    raise_file_limit()
    try:
        daemon = Daemon(settings, source=args.source or DEFAULT, allow_empty=args.allow_empty)
    except (VggvoxError, RuntimeError) as e:
        log.error("cannot start: %s", e)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only flags: the run loop does the work, in its own time (a handler runs
        # between any two bytecodes of the main thread, holding who knows what).
        if signum == signal.SIGHUP:
            daemon.reload_requested.set()
        else:
            daemon.stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        code = daemon.run()
    except (RuntimeError, VggvoxError) as e:  # an endpoint taken, unbindable or unshareable
        log.error("%s", e)
        return 1
    if daemon.worker.busy:
        # An enrollment is inside one long ONNX call and could not stop in time. Its
        # transaction never began, so nothing is lost; but tearing the interpreter
        # down under a running ONNX thread aborts the process (std::terminate).
        # Everything else is closed: leave now, with the right exit status.
        log.info("an enrollment was still embedding; abandoned, nothing stored")
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
