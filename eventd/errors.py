"""Exception types shared by every module, and the process exit codes they map to.

Exit codes carry the failure class across ``fork``: the daemon restarts a role that
exited with ``EXIT_TEMPORARY`` but gives up on one that exited with ``EXIT_CONFIG`` or
``EXIT_CANNOT_START`` (restarting a role with a wrong password would loop forever).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_TEMPORARY = 1       # crashed or lost a service: worth restarting
EXIT_USAGE = 2           # bad command line (argparse's own code)
EXIT_CANNOT_START = 3    # the role can never run as configured (credentials, tables, port in use)
EXIT_CONFIG = 78         # EX_CONFIG from sysexits.h: the configuration is invalid


class EventdError(Exception):
    """Base class of every error eventd raises on purpose."""


class ConfigError(EventdError):
    """The configuration is invalid; ``str()`` is ``FILE:LINE: key.path: reason``."""

    def __init__(self, file: str, line: int | None, key: str, reason: str) -> None:
        self.file, self.line, self.key, self.reason = file, line, key, reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


class ServiceUnavailable(EventdError):
    """A service the role needs (Kafka, a sink) is unreachable in a way the role does not ride out
    itself: the role exits with ``EXIT_TEMPORARY``, logging one line, and the daemon restarts it."""


class CannotStart(EventdError):
    """A role found at start-up that it can never run as configured (exit ``EXIT_CANNOT_START``)."""


class InvalidEvent(EventdError):
    """An input event failed validation; ``str()`` names the field and the reason."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}" if field else reason)


class DecodeError(EventdError):
    """A Kafka message could not be decoded (unknown schema fingerprint, corrupt body)."""
