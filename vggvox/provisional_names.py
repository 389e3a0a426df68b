"""Names for provisional voices (``provisional.py``): suggested, then confirmed.

``suggest`` finds the enrolled speaker a provisional voice scores close to:
not close enough for the open-set rule to name them (then the voice would not
be unknown), but above a looser cutoff, one that accepts ``SUGGEST_FACTOR``
times the rule's share of strangers. It is shown, never applied: the user
confirms with ``vggvox-client name unknown-7 alice``, which is ``promote``.

``promote`` enrolls a provisional voice under a name with the checks every
enrollment gets (``admission.admit``: the name not a look-alike of another
speaker's, the voice that of the voiceprint already enrolled under that name),
and one more: the voice must not be one that the rule names as another
enrolled speaker, which would enroll one person under two names. Each is
refused unless forced. The provisional voice is erased once it is enrolled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from vggvox.admission import admit
from vggvox.calibration import FALSE_ACCEPT_RANGE, AcceptRule, from_cosine
from vggvox.enrollment import Enrollment
from vggvox.errors import ModelMismatchError, StoreError, VoiceMismatchError
from vggvox.scoring import l2_normalize
from vggvox.store import SpeakerInfo, check_name

if TYPE_CHECKING:
    from vggvox.provisional import ProvisionalVoice, ProvisionalVoices

log = logging.getLogger(__name__)

SUGGEST_FACTOR = 4.0
"""A suggestion's cutoff accepts this many times the rule's share of strangers. At 4
(2 % with the default 0.5 %), on built conversations, a stranger recorded like an enrolled
speaker (the same corpus) is suggested as them; at 10 (5 %), a LibriSpeech reader was
also suggested as a VCTK speaker (0.41 against a cutoff of 0.36), which is noise."""


def suggest(centroid: np.ndarray, speech_s: float,
            voiceprints: tuple[Sequence[str], np.ndarray], rule: AcceptRule
            ) -> tuple[str, float] | None:
    """The enrolled speaker (name, score in the rule's metric) a voice of ``speech_s``
    seconds scores close to, or None. None without a calibrated rule: a raw threshold
    says nothing of how much looser "close" is."""
    names, prints = voiceprints
    if not rule.calibrated or not len(names):
        return None
    loose = replace(rule, false_accept=min(FALSE_ACCEPT_RANGE[1],
                                           rule.false_accept * SUGGEST_FACTOR))
    scores = np.asarray(prints, dtype=np.float32) @ l2_normalize(np.asarray(centroid))
    best = int(np.argmax(scores))
    score = from_cosine(float(scores[best]), rule.metric)
    return (names[best], score) if score >= loose.cutoff(speech_s, len(names)) else None


def promote(voices: ProvisionalVoices, label: str, name: str, rule: AcceptRule,
            replace_prints: bool = False, force: bool = False) -> SpeakerInfo:
    """Enroll provisional voice ``label`` as ``name`` (checked: see above), then erase it.

    It is enrolled from its stored embeddings alone, one embedding: the mean of the
    windows it was heard in. No audio of a recording is kept to enroll from: a
    voiceprint is biometric data, kept only as far as needed, and the recording is its
    owner's, not ours to keep a copy of."""
    if voices.card is None:
        raise StoreError("promoting a provisional voice needs its model's card")
    voice = voices.get(label)
    if voice is None:
        raise StoreError(f"no provisional voice {label!r}")
    if voices.foreign(voice):
        raise ModelMismatchError(f"{voice.label} was heard by model {voice.model}, not "
                                 f"{voices.model}")
    name = check_name(name)
    e = Enrollment(name, voice.centroid[None, :], [f"{voice.label} (provisional)"],
                   [voice.speech_s], voice.speech_s)
    _not_another(voices, voice, name, rule, force)
    info = admit(voices.store, voices.card, e, replace_prints, force)
    voices.forget(voice.label)
    return info


def _not_another(voices: ProvisionalVoices, voice: ProvisionalVoice, name: str,
                 rule: AcceptRule, force: bool) -> None:
    """VoiceMismatchError if ``rule`` names the voice as an enrolled speaker other than
    ``name``, unless ``force`` (then a warning)."""
    names, prints = voices.store.voiceprints(voices.model)
    others = [i for i, n in enumerate(names) if n != name]
    if not others:
        return
    scores = prints[others] @ voice.centroid
    best = int(np.argmax(scores))
    score = from_cosine(float(scores[best]), rule.metric)
    cutoff = rule.cutoff(voice.speech_s, len(names))
    if score < cutoff:
        return
    other = names[others[best]]
    why = (f"{voice.label} sounds like the enrolled speaker {other!r} (score {score:.2f}, at "
           f"or above the cutoff {cutoff:.2f} that names them)")
    if not force:
        raise VoiceMismatchError(f"{why}: name it {other!r} to add it to their voiceprint; "
                                 "nothing was stored (force to store it anyway)")
    log.warning("forced naming of %s as %r: %s", voice.label, name, why)
