"""The change log: which speakers each write to the voiceprints touched, by generation.

Every write to the voiceprints bumps the store's generation (``Tx.bump_generation``)
and records, in the same transaction, one row ``(generation, name)`` per speaker it
wrote, added or removed (``record``). A daemon that holds the voiceprints of
generation G then asks which speakers changed since (``changed_since``) and reads
only those, where it read every speaker's row before: at 100,000 speakers that scan
took 0.4-0.5 s on every daemon for every enrollment anywhere.

The log answers only when it is sure: a write that did not name its speakers (a
store copied in, an enrollment of more than ``MOST_NAMED`` at once) records one row
with no name, and a generation with no row at all (pruned past ``KEPT``, or written
by an older vggvox that keeps no log) leaves a gap. Either way ``changed_since`` says
None, and the caller reads the voiceprints whole, as it did before.

Generations are unique and in commit order on both backends (SQLite has one writer;
on PostgreSQL the ``meta`` row's lock orders the writers), so every generation up to
the one a reader saw is committed, and its rows with it.

Tables: SQLite creates ``changes`` with the store's other tables (``store.py``; an
additive table, which older versions ignore); PostgreSQL in its schema migration 3
(``store_pgschema.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence

from vggvox.storeapi import Tx

KEPT = 1_000
"""Generations kept in the log: a daemon further behind than this reads whole."""
MOST_NAMED = 256
"""A write of more speakers than this is logged as "read it whole" (one row)."""
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


def changed_since(db: Tx, since: int, upto: int) -> set[str] | None:
    """The speakers written by generations ``since + 1`` to ``upto`` (or later ones'
    too), or None when the log cannot say (see the module's docstring)."""
    if upto < since:
        return None  # the store went back (restored from a backup): read it whole
    rows = db.execute("SELECT generation, name FROM changes WHERE generation > ?",
                      (since,)).fetchall()
    seen = {int(g) for g, _ in rows}
    if any(name is None for _, name in rows) or not seen.issuperset(range(since + 1, upto + 1)):
        return None
    return {name for _, name in rows}


def chunks(names: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """``names`` in pieces small enough for one ``IN (?, ...)`` each."""
    for a in range(0, len(names), size):
        yield names[a:a + size]


def placeholders(names: Iterable[str]) -> str:
    return ", ".join("?" for _ in names)
