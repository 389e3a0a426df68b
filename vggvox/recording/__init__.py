"""Who spoke when in a recording, by name: the offline side of the engine.

The streaming Recognizer runs over a whole file as over a microphone; because
the whole file is known, its unknown voices are then re-clustered over the
file (``recluster``), overlapped speech is found by a segmentation model
(``overlap``), and the result is written as RTTM, JSON and a summary
(``outputs``), or as subtitles with a transcript (``transcript``,
``subtitles``). The types every part shares are in ``segments``.
"""
