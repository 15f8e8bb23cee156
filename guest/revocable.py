"""The revocable fixture: a provider of guest/modules/revocable_test and its consumer file.

The provider's resource is a line of text; "remove" revokes it (the write
returns when revocable_provider_revoke() does: that is the bound the
scenario checks), "create" makes a new provider. Readers are judged here,
where the revoke's times are known: data after the revoke returned, or the
revoked answer before it started, is wrong.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

import fixtures
from fixtures import FixtureError

DIR = Path("/sys/kernel/debug/revocable_harness")
REVOKE = "resource_gone"  # harness/scenario.py REVOKE_WORD
GONE = b"(null)"  # harness/scenario.py REVOKED_ANSWER


class RevocableProvider:
    def __init__(self, spec: dict, modules: dict[str, str]):
        self.name = spec["name"]
        self.data = spec["data"].encode()
        self.modules = modules
        self.live = False
        self.generation = 0  # providers made so far: identity() shows re-creation worked
        self.revoke_started = 0.0  # monotonic; 0: no revoke since the last create
        self.revoke_returned = 0.0

    # --- the Fixture interface (guest/fixtures.py) -----------------------------

    def setup(self) -> None:
        fixtures.insmod(self.modules, "revocable_test", DIR / "provider")
        self.create()

    def present(self) -> bool:
        return self.live

    def remove(self) -> None:
        self.revoke_started = time.monotonic()
        (DIR / "provider").write_text(REVOKE)
        self.revoke_returned = time.monotonic()
        self.live = False

    def create(self) -> None:
        (DIR / "provider").write_bytes(self.data)
        self.revoke_started = self.revoke_returned = 0.0
        self.live = True
        self.generation += 1
        got = self._read_once()
        if got != self.data:
            raise FixtureError(f"fixture {self.name}: the new consumer file reads {got!r}")

    def unbind(self, level: str | None) -> None:
        raise FixtureError(f"fixture {self.name}: a revocable provider is revoked (remove)")

    bind = unbind

    def perform(self, action: dict, step: int) -> None:
        raise FixtureError(f"fixture {self.name}: a revocable provider cannot {action['do']}")

    def identity(self) -> str:
        return f"provider {self.generation}"

    def values(self) -> dict[str, str]:
        return {"consumer": str(DIR / "consumer")}

    def teardown(self) -> None:
        if self.live:
            self.remove()

    # --- for the revocable-read worker -------------------------------------------

    def judge(self, got: bytes, started: float) -> bool:
        """Whether a read begun at ``started`` saw the revoke; raises if its answer is wrong."""
        if got == GONE:
            if not self.revoke_started:  # set before the revoking write is made
                raise OSError(errno.EBADMSG, "the revoked answer before any revoke")
            return True
        if got != self.data:
            raise OSError(errno.EBADMSG, f"the consumer read {got[:40]!r}, not the resource")
        if self.revoke_returned and started > self.revoke_returned:
            raise OSError(
                errno.EBADMSG,
                f"a read that started {started - self.revoke_returned:.3f} s after the revoke "
                "returned still got the resource",
            )
        return False

    def _read_once(self) -> bytes:
        return (DIR / "consumer").read_bytes()
