"""Why HTCondor holds a job, in words a physicist understands.

``HoldReasonCode`` values are those of HTCondor's ``condor_holdcodes.h``; the raw
``HoldReason`` is only quoted (cleaned and shortened) when no better sentence exists.
"""

from __future__ import annotations

import re

MAX_QUOTE = 200

_MEMORY = re.compile(r"memory", re.IGNORECASE)
_DISK = re.compile(r"disk", re.IGNORECASE)
_NOT_FOUND = re.compile(r"no such file|not found|cannot execute|permission denied", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

_SENTENCES = {
    1: "The job was put on hold by an administrator or by you; it waits until released.",
    3: "The job's own policy put it on hold.",
    13: "The job's input files could not be copied to the node.",
    12: "The job's output files could not be copied back when it ended.",
    15: "The job was submitted on hold; it waits until released.",
    16: "The node's preparation step for the job failed.",
    21: "The node put the job on hold.",
    26: "The facility's policy put the job on hold.",
    35: "The container image could not be found or pulled.",
    45: "The container could not be started on the node.",
    46: "The job ran longer than its slice allows and was stopped.",
    47: "The session reached the time limit of its slice and was stopped.",
}
CONTAINER_SUBCODE = 1021


def clean(reason: object, limit: int = MAX_QUOTE) -> str:
    """The batch system's text, on one line, without control characters, shortened."""
    text = _CONTROL.sub(" ", str(reason or "")).strip()
    text = re.sub(r"\s{2,}", " ", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def explain_hold(code: object, subcode: object = None, reason: object = "") -> str:
    """One or two sentences for a held job; the original reason follows in brackets."""
    raw = clean(reason)
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if code == 34:  # JobOutOfResources
        if _DISK.search(raw) and not _MEMORY.search(raw):
            text = "The job wrote more to its scratch disk than the slice allows."
        else:
            text = (
                "The job used more memory than its slice provides and was stopped; "
                "pick a slice with more memory or use less."
            )
    elif code == 6:  # FailedToCreateProcess
        text = "The node could not start the job's program."
        if _NOT_FOUND.search(raw):
            text += " The program or the container's entry point is missing on the node."
    elif code in (3, 26) and _MEMORY.search(raw):
        text = "The job used more memory than its slice provides and was put on hold."
    elif code == 26 and re.search(r"duration|time", raw, re.I):
        text = _SENTENCES[47]
    elif subcode == CONTAINER_SUBCODE:
        text = _SENTENCES[45]
    elif code in _SENTENCES:
        text = _SENTENCES[code]
    else:
        return (
            f"The batch system put the job on hold: {raw}"
            if raw
            else ("The batch system put the job on hold without saying why.")
        )
    return f"{text} ({raw})" if raw else text
