"""The fsync policy: when the queue's appended bytes are forced to disk, and who waits for it.

- ``always``: a client is answered only after an fsync covers its events (group commit: one
  fdatasync covers every append made before it started, so concurrent clients share it).
  Survives a process crash and a power loss.
- ``interval``: the queue is fsynced every ``fsync_interval`` while it has new data; clients are
  answered after the append. Survives a process crash; a power loss may lose the events answered
  during the last interval.
- ``never``: no explicit fsync (the kernel writes back on its own, typically within 30 s).
  Survives a process crash; a power loss may lose the last ~30 s of answered events.

Callers that must not move on before their records are on disk (the tail input saves its file
positions) register with :meth:`Syncer.when_synced`; under ``never`` they are called at once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import Callable

from eventd.roles.collector.queue import DurableQueue, fsync_dir

log = logging.getLogger(__name__)


class Syncer:
    """Runs the policy in its own thread (fdatasync releases the GIL)."""

    def __init__(self, queue: DurableQueue, policy: str, interval: float) -> None:
        self.queue, self.policy, self.interval = queue, policy, interval
        self._cond = threading.Condition()
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()
        self._synced = queue.next_seq      # every record below it is on disk
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="queue-syncer", daemon=True)
        self.error: OSError | None = None

    @property
    def synced(self) -> int:
        """Every record below this seq is on disk (under ``never``: written, which is all we promise)."""
        return self.queue.next_seq if self.policy == "never" else self._synced

    @property
    def waits(self) -> bool:
        """Whether answers wait for an fsync (policy ``always``)."""
        return self.policy == "always"

    def start(self) -> None:
        self._thread.start()        # under ``never`` too: it closes the files of rolled segments

    def when_synced(self, seq: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the syncer thread, or now) once every record below ``seq`` is on disk."""
        if self.policy == "never" or seq <= self._synced:
            callback()
            return
        with self._cond:
            self._waiters.append((seq, callback))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self.policy == "always":   # at once for waiters, and every interval for the others
                    self._cond.wait_for(lambda: self._waiters or self._stopping, self.interval)
                else:
                    self._cond.wait_for(lambda: self._stopping, self.interval if self.policy == "interval" else 1.0)
                stopping = self._stopping
            self.sync()
            if stopping:
                return

    def sync(self) -> None:
        """fdatasync everything appended so far, then release the waiters it covers."""
        end, fds, retired, dir_dirty = self.queue.sync_work()
        if end > self._synced or retired or dir_dirty:
            try:
                if self.policy != "never" or self._stopping:
                    for fd in fds:
                        os.fdatasync(fd)
                    if dir_dirty:
                        fsync_dir(self.queue.dir)
            except OSError as exc:
                # The data is still in the page cache (safe from a process crash); say so loudly.
                log.error("queue %s: fsync failed: %s — events answered since the last good fsync would "
                          "not survive a power loss", self.queue.dir, exc.strerror)
                self.error = exc
            for fd in retired:
                os.close(fd)
            self._synced = max(self._synced, end)
        self._release()

    def _release(self) -> None:
        ready = []
        with self._cond:
            while self._waiters and self._waiters[0][0] <= self._synced:
                ready.append(self._waiters.popleft()[1])
        for callback in ready:
            try:
                callback()
            except Exception:  # a waiter's bug must not stop fsyncs
                log.exception("fsync waiter failed")

    def stop(self) -> None:
        """Final fsync, then stop the thread (under ``never`` too: a clean stop leaves the queue on disk)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join()
        else:
            self.sync()
