"""Client of supervisord's XML-RPC interface on its unix socket, with a timeout on every call
(supervisor's own transport has none)."""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from supervisor.xmlrpc import Faults

RUNNING_STATES = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")
STOPPED_STATES = ("STOPPED", "EXITED", "FATAL", "UNKNOWN")

RpcFault = xmlrpc.client.Fault


class RpcUnavailable(Exception):
    """supervisord does not answer (not running, socket missing, or too slow)."""


@dataclass(frozen=True)
class ProcInfo:
    """One process as supervisor sees it. ``start``/``stop``/``now`` are Unix seconds (whole)."""

    group: str
    name: str
    state: str
    pid: int
    start: int
    stop: int
    now: int
    exitstatus: int
    spawnerr: str

    @property
    def full_name(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def slot(self) -> int:
        return int(self.name.rsplit("-", 1)[1])

    @classmethod
    def from_rpc(cls, d: dict[str, Any]) -> "ProcInfo":
        return cls(d["group"], d["name"], d["statename"], d["pid"], d["start"], d["stop"], d["now"],
                   d["exitstatus"], d["spawnerr"])


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


class Supervisor:
    """One call = one connection: safe to use from several threads."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path, self.timeout = socket_path, timeout

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        proxy = xmlrpc.client.ServerProxy("http://localhost",
                                          transport=_UnixTransport(self.socket_path, timeout or self.timeout))
        try:
            return getattr(proxy, method)(*args)
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as exc:
            raise RpcUnavailable(f"supervisord at {self.socket_path}: {exc}") from None

    def state(self) -> str:
        return self.call("supervisor.getState")["statename"]

    def processes(self) -> list[ProcInfo]:
        return [ProcInfo.from_rpc(d) for d in self.call("supervisor.getAllProcessInfo")]

    def start(self, name: str, wait: bool = False, timeout: float | None = None) -> bool:
        """Start a process (``group:name``) or a whole group (``group:*`` or ``group``).
        False when it was running already."""
        return self._call_unless(Faults.ALREADY_STARTED, "supervisor.startProcess", name, wait, timeout=timeout)

    def start_group(self, group: str, wait: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        """Start every process of ``group`` not running yet; one result per process."""
        return self.call("supervisor.startProcessGroup", group, wait, timeout=timeout)

    def stop(self, name: str, wait: bool = False, timeout: float | None = None) -> bool:
        """Stop a process; False when it was not running."""
        return self._call_unless(Faults.NOT_RUNNING, "supervisor.stopProcess", name, wait, timeout=timeout)

    def _call_unless(self, nothing_to_do: int, method: str, *args: Any, timeout: float | None) -> bool:
        """Call ``method``; False when it failed only with fault ``nothing_to_do`` (already done)."""
        try:
            self.call(method, *args, timeout=timeout)
        except RpcFault as exc:
            if exc.faultCode == nothing_to_do:
                return False
            raise
        return True

    def stop_group(self, group: str, wait: bool = False, timeout: float | None = None) -> list[dict[str, Any]]:
        return self.call("supervisor.stopProcessGroup", group, wait, timeout=timeout)

    def stop_all(self) -> None:
        """Ask every running process to stop, all at once (supervisord's own shutdown goes group by
        group, each waiting up to its stopwaitsecs: too slow for one stop deadline)."""
        self.call("supervisor.stopAllProcesses", False)

    def reload(self) -> tuple[list[str], list[str], list[str]]:
        """Re-read supervisord.conf: the (added, changed, removed) group names."""
        added, changed, removed = self.call("supervisor.reloadConfig")[0]
        return added, changed, removed

    def add_group(self, group: str) -> None:
        self.call("supervisor.addProcessGroup", group)

    def remove_group(self, group: str) -> None:
        self.call("supervisor.removeProcessGroup", group)

    def shutdown(self) -> None:
        self.call("supervisor.shutdown")
