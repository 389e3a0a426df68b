"""Speaker names: one Unicode form each, and none that passes for another speaker's.

A name is kept in NFC, so the NFC and NFD spellings of "José" are one speaker.
A new name that *looks like* an enrolled one (Cyrillic "аlice" beside "alice")
would let someone pass as that speaker in every list, log and event, so it is
refused unless forced. "Looks like" is decided by Unicode's own confusables
data, UTS #39 skeletons, computed by ICU's SpoofChecker (the reference
implementation, through PyICU; the ``pyicu-wheels`` build carries ICU itself,
so no compiler or system ICU is needed). Two names are confusable when their
skeletons are equal, or their case-folded skeletons are: "alice", "Alice" and
"ALICE" count as confusable too, since a reader takes them for one person
(and a name that differs from another only in case is a mistake or a trick).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable

import icu

from vggvox.errors import ConfusableNameError, StoreError

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 128
_SPOOF = icu.SpoofChecker()


def check_name(name: object) -> str:
    """A speaker name: non-empty printable text without surrounding spaces, in Unicode
    NFC form (so the NFC and NFD spellings of "José" are one speaker)."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError("speaker name must be a non-empty string")
    name = unicodedata.normalize("NFC", name)
    if name != name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise StoreError(
            f"speaker name {name[:40]!r} must be printable, at most {MAX_NAME_LENGTH} "
            "characters, without leading or trailing spaces"
        )
    return name


def skeletons(name: str) -> frozenset[str]:
    """The name's UTS #39 skeleton, as written and case-folded: a name that shares
    one with another is confusable with it."""
    # getSkeleton's type argument is ignored since ICU 58 (one skeleton for all cases).
    return frozenset({_SPOOF.getSkeleton(0, name), _SPOOF.getSkeleton(0, name.casefold())})


class LookAlikes:
    """Names by skeleton: which of them a new name could pass for, without computing
    every name's skeletons again for each new one (enrolling N names is O(N), not O(N^2))."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._by_skeleton: dict[str, list[str]] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        for sk in skeletons(name):
            self._by_skeleton.setdefault(sk, []).append(name)

    def discard(self, name: str) -> None:
        """No longer held (a cached index brought up to date: ``storerows.HeldNames``)."""
        for sk in skeletons(name):
            held = self._by_skeleton.get(sk, [])
            if name in held:
                held.remove(name)

    def twin(self, name: str) -> str | None:
        """The first name held (not ``name`` itself) that a reader could take for ``name``."""
        for sk in sorted(skeletons(name)):
            for other in self._by_skeleton.get(sk, ()):
                if other != name:
                    return other
        return None

    def refuse(self, name: str, force: bool) -> None:
        """ConfusableNameError if ``name`` looks like a name held, unless ``force``
        (then a warning); either way ``name`` is held from then on."""
        twin = self.twin(name)
        if twin is not None:
            if not force:
                raise ConfusableNameError(
                    f"speaker name {spelled(name)} looks like the enrolled speaker "
                    f"{spelled(twin)} (Unicode confusables, case ignored); force it to enroll "
                    "a different speaker")
            log.warning("enrolling %s, which looks like the enrolled speaker %s: forced",
                        spelled(name), spelled(twin))
        self.add(name)


def look_alike(name: str, others: Iterable[str]) -> str | None:
    """One of ``others`` (not ``name`` itself) that a reader could take for ``name``."""
    return LookAlikes(others).twin(name)


def spelled(name: str) -> str:
    """``name`` quoted, with its non-ASCII characters named: look-alikes print alike,
    so an error about them must say which characters differ."""
    odd = dict.fromkeys(c for c in name if not c.isascii())
    if not odd:
        return repr(name)
    return f"{name!r} (" + ", ".join(
        f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in odd) + ")"
