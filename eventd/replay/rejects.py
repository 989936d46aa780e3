"""The rejects file: one JSON object per rejected line, in input order.

``{"file": "in.json.gz", "line": 12, "reason": "time: 'x' is not ISO-8601", "text": "<the line>"}``

``text`` is the line exactly as read: bytes that are not UTF-8 are kept as lone surrogates
(Python's ``surrogateescape``, written by JSON as ``\\udcXX``), so
``json.loads(l)["text"].encode("utf-8", "surrogateescape")`` gives the original bytes back.
An over-long line is not copied (``text`` is null; ``bytes`` says how long it was).
Without ``--rejects`` the first few rejects are logged and the rest only counted.
"""

from __future__ import annotations

import json
import logging
from typing import TextIO

from eventd.errors import InvalidEvent

log = logging.getLogger(__name__)
LOGGED_WITHOUT_FILE = 10


class Rejects:
    """Writes rejected lines to ``path`` (truncated at start), or logs the first few."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fh: TextIO | None = open(path, "w", encoding="ascii") if path else None
        self._logged = 0

    def add(self, file: str, line: int, exc: InvalidEvent, data: bytes | None, size: int) -> None:
        if self._fh is not None:
            text = data.decode("utf-8", "surrogateescape") if data is not None else None
            record = {"file": file, "line": line, "reason": str(exc), "text": text}
            if data is None:
                record["bytes"] = size
            self._fh.write(json.dumps(record) + "\n")
        elif self._logged < LOGGED_WITHOUT_FILE:
            self._logged += 1
            log.warning("%s:%d: rejected: %s%s", file, line, exc,
                        "" if self._logged < LOGGED_WITHOUT_FILE else " (further rejects are only counted; "
                        "use --rejects PATH to keep them)")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
