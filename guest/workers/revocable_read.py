"""revocable-read: read the revocable consumer file from offset 0 (threads may share the
fd), each answer judged by the fixture."""

from __future__ import annotations

import os
import time

from guest.workers.base import Handle, ThreadState, Worker


class RevocableRead(Worker):
    needs_fixture = True
    fixture_types = ("revocable",)  # it reads the consumer file of a revocable provider
    failed_read_is_wrong = True  # a revoked resource is an answer ("(null)"), never an error

    def open_handle(self, lines: list[int]) -> Handle:
        return Handle(os.open(self._file_path(), os.O_RDONLY))

    def op(
        self, handle: Handle | None, lines: list[int], buf: bytearray, state: ThreadState
    ) -> int:
        self._revocable_read(handle, state)
        return 1

    def _revocable_read(self, handle: Handle, state: ThreadState) -> None:
        """One read of the consumer file from offset 0 (threads may share the fd), judged."""
        started = time.monotonic()
        got = os.pread(handle.fd, 256, 0)
        state.bytes += len(got)
        try:
            revoked = self.fixture.judge(got, started)
        except OSError as exc:
            with self.lock:
                if len(self.wrong) < 10:
                    self.wrong.append(exc.strerror)
            raise
        if revoked:
            with self.lock:
                self.revoked_reads += 1


WORKER = RevocableRead
