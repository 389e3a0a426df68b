"""The change log: which speakers each write to the voiceprints touched, by generation.

Every write to the voiceprints bumps the store's generation (``Tx.bump_generation``)
and records, in the same transaction, one row ``(generation, name)`` per speaker it
wrote (``record``). A daemon that holds the voiceprints of generation G then asks
what changed since (``changed_since``) and reads only those speakers, where it read
every speaker's row before: at 100,000 speakers that scan took 0.4-0.5 s on every
daemon for every enrollment anywhere.

A removal names nobody: voiceprints are biometric data, and a removed speaker's
name must be left in no row of the store. ``forget`` turns the name's earlier rows
into ``REMOVED`` rows, in the removing transaction, and the removal itself records
one ``REMOVED`` row. A follower that meets one compares the names it holds with the
store's names (a names-only read) and drops those the store no longer has.

The log answers only when it is sure: a write that did not name its speakers (a
store copied in, an enrollment of more than ``MOST_NAMED`` at once) records one row
with no name (NULL), and a generation with no row at all (pruned past ``KEPT``, or
written by an older vggvox that keeps no log) leaves a gap. Either way
``changed_since`` says None, and the caller reads the voiceprints whole.

Generations are unique and in commit order on both backends (SQLite has one writer;
on PostgreSQL the ``meta`` row's lock orders the writers), so every generation up to
the one a reader saw is committed, and its rows with it.

Tables: SQLite creates ``changes`` with the store's other tables (``store.py``; an
additive table, which older versions ignore); PostgreSQL in its schema migration 3
(``store_pgschema.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from vggvox.storeapi import Tx

KEPT = 1_000
"""Generations kept in the log: a daemon further behind than this reads whole."""
MOST_NAMED = 256
"""A write of more speakers than this is logged as "read it whole" (one row)."""
REMOVED = ""
"""The name a removal's row holds: "some speaker is gone, compare names". Never a
speaker's name (``names.check_name`` refuses an empty one), and not NULL, which
says "read whole"."""
SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, name TEXT);
CREATE INDEX IF NOT EXISTS changes_generation ON changes (generation);
"""
POSTGRESQL_DDL = (
    "CREATE TABLE changes (generation bigint NOT NULL, name text)",
    "CREATE INDEX changes_generation ON changes (generation)",
)


def record(db: Tx, generation: int, names: Collection[str] | None) -> None:
    """Log the speakers ``generation`` wrote (None: unknown, read whole), and forget
    generations older than ``KEPT``; in the writer's transaction."""
    if names is None or len(names) > MOST_NAMED:
        rows: list[tuple[int, str | None]] = [(generation, None)]
    else:
        rows = [(generation, n) for n in sorted(set(names))] or [(generation, None)]
    db.executemany("INSERT INTO changes (generation, name) VALUES (?, ?)", rows)
    if generation > KEPT and generation % 16 == 0:  # an indexed range delete, now and then
        db.execute("DELETE FROM changes WHERE generation <= ?", (generation - KEPT,))


@dataclass(frozen=True)
class Changes:
    """What generations after the one a reader holds changed."""

    written: frozenset[str]
    """Speakers enrolled, appended to or replaced (or since removed): read them."""
    removals: bool = False
    """Some speaker was removed, unnamed: compare the names held with the store's."""


def forget(db: Tx, name: str) -> None:
    """Leave ``name`` in no row of the log: its rows become removal rows (their
    generations keep a row, so the log has no gap); in the removing transaction,
    before the erasure that overwrites the old rows' bytes."""
    db.execute("UPDATE changes SET name = ? WHERE name = ?", (REMOVED, name))


def removed(db: Tx, name: str) -> int:
    """Log the removal of ``name``, whose rows this transaction deleted, without its
    name (``forget``); the new generation."""
    forget(db, name)
    return db.bump_generation([REMOVED])


def changed_since(db: Tx, since: int, upto: int) -> Changes | None:
    """The changes of generations ``since + 1`` to ``upto`` (or later ones' too), or
    None when the log cannot say (see the module's docstring)."""
    if upto < since:
        return None  # the store went back (restored from a backup): read it whole
    rows = db.execute("SELECT generation, name FROM changes WHERE generation > ?",
                      (since,)).fetchall()
    seen = {int(g) for g, _ in rows}
    if any(name is None for _, name in rows) or not seen.issuperset(range(since + 1, upto + 1)):
        return None
    names = {name for _, name in rows}
    return Changes(frozenset(names - {REMOVED}), REMOVED in names)


def chunks(names: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``names`` in pieces small enough for one ``IN (?, ...)`` each."""
    for a in range(0, len(names), size):
        yield names[a:a + size]


def placeholders(names: Iterable[str]) -> str:
    return ", ".join("?" for _ in names)
