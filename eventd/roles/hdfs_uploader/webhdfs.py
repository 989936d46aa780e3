"""A small WebHDFS client in which every call is bounded and every answer is checked.

Why not pywebhdfs (0.4.1, the project's listed client): its two-step create sends the
DataNode leg without any timeout (seen blocked far past its ``timeout``), passing a timeout
through ``request_extra_opts`` raises TypeError, it calls module-level ``requests`` functions
so no session or adapter can be slipped in, and ``requests`` timeouts bound each socket read,
not the call. Wrapping it would mean a thread per call and abandoned threads stuck on dead
sockets. This client speaks the same REST API over :mod:`transport`, where every exchange —
both legs of a create included — has a total deadline of ``timeout`` seconds.

Errors are split by what the caller should do:
:class:`HdfsUnavailable` — down, timed out, busy, in safe mode, standby: retry later;
:class:`HdfsRefused` — permission, invalid path, a file where a directory should be: retrying
cannot help, an operator must act.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterable, Iterator
from urllib.parse import quote, urlencode, urlsplit

from eventd.errors import EventdError
from eventd.roles.hdfs_uploader.transport import Answer, TransportError, exchange

# RemoteException types that no retry can fix; every other failure is treated as transient.
_REFUSALS = frozenset({
    "AccessControlException", "AuthorizationException", "SecurityException", "IllegalArgumentException",
    "InvalidPathException", "ParentNotDirectoryException", "UnsupportedOperationException",
    "FileAlreadyExistsException", "PathIsNotEmptyDirectoryException", "UnresolvedPathException",
})


class HdfsError(EventdError):
    """Base of the errors below."""


class HdfsUnavailable(HdfsError):
    """HDFS cannot serve the call now (down, timed out, safe mode, standby): retry later."""


class HdfsRefused(HdfsError):
    """HDFS refused the call for a reason retrying cannot fix (permission, invalid path)."""


class WebHdfs:
    """The operations the uploader needs. Thread-compatible, holds no connection."""

    def __init__(self, host: str, port: int, user: str, timeout: float, min_upload_rate: int = 1 << 20) -> None:
        """``timeout``: total seconds of each call; the data leg of a create gets
        ``length / min_upload_rate`` seconds more, so a big file is not cut off by a deadline
        meant for a request, while a DataNode slower than that rate is given up."""
        self.host, self.port, self.user, self.timeout = host, port, user, timeout
        self.min_upload_rate = min_upload_rate
        self._cap: float | None = None

    @contextlib.contextmanager
    def deadline(self, until: float) -> Iterator[None]:
        """Within this block no call runs past the monotonic time ``until`` (graceful stop)."""
        self._cap = until
        try:
            yield
        finally:
            self._cap = None

    # -- operations ------------------------------------------------------------------------
    def status(self, path: str) -> dict[str, Any] | None:
        """The FileStatus of ``path``, or None if it does not exist."""
        answer = self._call("GET", path, "GETFILESTATUS", missing_ok=True)
        return None if answer is None else self._json(answer, "FileStatus", path)

    def list(self, path: str) -> list[dict[str, Any]]:
        """The FileStatus of each entry of directory ``path``; [] if it does not exist."""
        answer = self._call("GET", path, "LISTSTATUS", missing_ok=True)
        if answer is None:
            return []
        statuses = self._json(answer, "FileStatuses", path)
        return list(statuses.get("FileStatus", [])) if isinstance(statuses, dict) else []

    def mkdirs(self, path: str) -> None:
        """Create ``path`` and its parents; succeeds if it exists already."""
        if not self._boolean(self._call("PUT", path, "MKDIRS"), path):
            raise HdfsRefused(f"MKDIRS {path} returned false")

    def rename(self, src: str, dst: str) -> bool:
        """HDFS's own answer: False when it did not rename (destination exists, its parent is
        missing, source missing) — the caller must check it."""
        return self._boolean(self._call("PUT", src, "RENAME", destination=dst), src)

    def delete(self, path: str, recursive: bool = False) -> bool:
        """True if deleted, False if there was nothing to delete."""
        return self._boolean(self._call("DELETE", path, "DELETE", recursive=str(recursive).lower()), path)

    def create(self, path: str, chunks: Iterable[bytes], length: int, overwrite: bool = True) -> None:
        """Write a new file of ``length`` bytes: the NameNode answers 307 with the DataNode's
        address, the data goes there and must be answered 201. Both legs are bounded."""
        answer = self._call("PUT", path, "CREATE", expect=307, overwrite=str(overwrite).lower())
        assert answer is not None
        location = answer.headers.get("location", "")
        url = urlsplit(location)
        if url.scheme != "http" or not url.hostname:
            raise HdfsUnavailable(f"CREATE {path}: unusable redirect {location!r}")
        target = url.path + (f"?{url.query}" if url.query else "")
        data = self._exchange(url.hostname, url.port or 80, "PUT", target, f"CREATE {path} (DataNode leg)",
                              chunks, length, extra=length / self.min_upload_rate)
        if data.status != 201:
            self._fail(data, f"CREATE {path} (DataNode {url.hostname}:{url.port})")

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, method: str, path: str, op: str, expect: int = 200, missing_ok: bool = False,
              **params: str) -> Answer | None:
        query = urlencode({"op": op, "user.name": self.user, **params})
        target = f"/webhdfs/v1{quote(path, safe='/=+,-_.~')}?{query}"
        answer = self._exchange(self.host, self.port, method, target, f"{op} {path}")
        if answer.status == expect:
            return answer
        if missing_ok and answer.status == 404 and _remote_exception(answer)[0] == "FileNotFoundException":
            return None
        self._fail(answer, f"{op} {path}")
        raise AssertionError("unreachable")

    def _exchange(self, host: str, port: int, method: str, target: str, what: str,
                  chunks: Iterable[bytes] | None = None, length: int | None = None, extra: float = 0.0) -> Answer:
        deadline = time.monotonic() + self.timeout + extra
        if self._cap is not None:
            deadline = min(deadline, self._cap)
        try:
            return exchange(host, port, method, target, deadline, chunks, length)
        except TransportError as exc:
            raise HdfsUnavailable(f"{what}: {exc}") from None

    @staticmethod
    def _fail(answer: Answer, what: str) -> None:
        name, message = _remote_exception(answer)
        text = f"{what}: HTTP {answer.status} {name or ''}: {message}".replace(" : ", ": ")
        if answer.status == 401 or name in _REFUSALS:
            raise HdfsRefused(text)
        raise HdfsUnavailable(text)

    @staticmethod
    def _json(answer: Answer, key: str, path: str) -> Any:
        try:
            return json.loads(answer.body)[key]
        except (ValueError, KeyError, TypeError):
            raise HdfsUnavailable(f"{path}: malformed WebHDFS answer {answer.body[:200]!r}") from None

    def _boolean(self, answer: Answer | None, path: str) -> bool:
        value = self._json(answer, "boolean", path) if answer is not None else None
        if not isinstance(value, bool):
            raise HdfsUnavailable(f"{path}: expected a boolean answer, got {value!r}")
        return value


def _remote_exception(answer: Answer) -> tuple[str | None, str]:
    """(exception class, message) of a WebHDFS error answer; (None, body text) if not JSON."""
    try:
        remote = json.loads(answer.body)["RemoteException"]
        return str(remote.get("exception")), str(remote.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, answer.body[:200].decode("utf-8", "replace")
