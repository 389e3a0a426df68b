"""A real PostgreSQL server for a test: Debian's binaries, ``initdb`` into a temporary
folder as the ``postgres`` user (PostgreSQL refuses to run as root), listening on
127.0.0.1 at a free port, stopped and removed afterwards.

    with PostgresServer() as pg:
        store = open_store(pg.url)
        pg.stop()    # the database goes away (a daemon must keep going)
        pg.start()   # and comes back, with the same data

``available()`` says why none can be started here (the tests skip with that reason).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from daemon_proc import free_port

USER = "postgres"
"""The system account the server runs as (Debian's package creates it)."""
DB_USER = "vggvox"
DB_NAME = "vggvox"


def _bindir() -> Path | None:
    """Debian keeps the server's programs off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def available() -> str | None:
    """None when a server can be started here, else why not."""
    if _bindir() is None:
        return "PostgreSQL's initdb not found (apt-get install postgresql; make test does)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER!r} system user to run PostgreSQL as"
    if os.geteuid() != 0:
        return "starting PostgreSQL as the postgres user needs root (runuser)"
    return None


class PostgresServer:
    """One private PostgreSQL cluster; ``url`` reaches its database ``vggvox``."""

    def __init__(self, port: int | None = None) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(available() or "no PostgreSQL")
        self.bin = bindir
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="vggvox-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.url = f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"
        """A URL for ``open_store`` and ``--store``; ``trust`` authentication on loopback."""
        owner = pwd.getpwnam(USER)
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", DB_USER,
                           "-A", "trust", "--no-sync", "-E", "UTF8"], timeout=120)
        self.start()
        self._as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p",
                           str(self.port), "-U", DB_USER, DB_NAME])

    def _as_postgres(self, argv: list[str], timeout: float = 60) -> None:
        done = subprocess.run(["runuser", "-u", USER, "--", *argv], capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off")
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                           str(self.log), "-o", opts, "-w", "-t", "60", "start"], timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed); its data stays for start()."""
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode,
                           "-w", "-t", "60", "stop"], timeout=90)

    def psql(self, sql: str) -> str:
        """Run SQL with Debian's psql (not our code) and return its unaligned output."""
        done = subprocess.run(
            ["runuser", "-u", USER, "--", str(self.bin / "psql"), "-h", "127.0.0.1", "-p",
             str(self.port), "-U", DB_USER, "-d", DB_NAME, "-At", "-v", "ON_ERROR_STOP=1",
             "-c", sql], capture_output=True, text=True, timeout=60, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr.strip()}")
        return done.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database of its own (a test's, on a server its module shares):
        its URL. ``url`` names the server's first database."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def close(self) -> None:
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
