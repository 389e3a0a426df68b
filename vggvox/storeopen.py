"""Which store a path or URL names, and opening it.

- a path (``Path``, or text without a scheme): the SQLite file there (the default);
- ``sqlite:PATH``: the same, said explicitly;
- ``postgresql://...`` or ``postgres://...``: a PostgreSQL database (``store_pg.py``;
  psycopg is imported only then), libpq's URL form
  (``postgresql://user:password@host:port/dbname?sslmode=require``);
- anything else that starts with a scheme (``mysql://``, ``postgresql:`` without
  ``//``, ``http://``): an error naming the accepted forms. Before, such a text was taken
  for a path, and ``--store postgresql://host/db`` made a folder named ``postgresql:``.

A one-letter scheme (``C:\\...``) is a Windows drive, not a scheme.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from vggvox.errors import StoreError
from vggvox.storeapi import Store

ACCEPTED = "a file path, sqlite:PATH, or postgresql://[user[:password]@]host[:port]/dbname"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


def parse_store_location(where: str | Path) -> str | Path:
    """A PostgreSQL URL (as given), or the SQLite file's path; StoreError (one line
    naming the text and the forms accepted) for any other scheme."""
    if isinstance(where, Path):
        return where
    text = where.strip()
    found = _SCHEME.match(text)
    if found is None:
        return Path(text).expanduser()
    scheme = found.group(1).lower()
    rest = text[found.end():]
    if scheme == "sqlite":
        if rest.startswith("//"):  # sqlite:///abs/path, as SQLAlchemy writes it
            rest = rest[2:]
        if not rest:
            raise StoreError(f"store {where!r}: sqlite: needs a path (sqlite:PATH)")
        return Path(rest).expanduser()
    if scheme in ("postgresql", "postgres") and rest.startswith("//"):
        return text
    raise StoreError(f"store {hidden(text)!r}: unsupported scheme {scheme!r}; "
                     f"use {ACCEPTED}")


def is_url(where: str | Path) -> bool:
    """Whether ``where`` names a database server (not a SQLite file)."""
    return isinstance(parse_store_location(where), str)


def hidden(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(where: str | Path) -> Store:
    """The store ``where`` names (see the module's doc); StoreError if it cannot be
    opened, StoreUnavailable if its server cannot be reached."""
    found = parse_store_location(where)
    if isinstance(found, Path):
        from vggvox.store import VoiceprintStore

        return VoiceprintStore(found)
    from vggvox.store_pg import PgStore

    return PgStore(found)


def store_argument(text: str) -> str:
    """An argparse ``type`` for ``--store``: the text, checked (one line if refused)."""
    import argparse

    try:
        parse_store_location(text)
    except StoreError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text
