"""Key rotation without a restart: the gateway re-reads its API keys file when it changes.

A Kubernetes Secret volume changes by swapping a symlink to a new directory (`..data`), so
inotify on the file itself misses it; the watcher polls instead: every `interval_s` it reads
the file (following links) and, when the content differs, hands the new keys to `apply` —
which swaps the key store in one assignment, so a request sees the old set or the new one,
never a mix. Streams already admitted are not affected. A file that cannot be read or holds
no key keeps the current keys (rotation must never switch authentication off) and says so
once in the log. Bound: a new key works, and a removed one is refused, within
`KEY_RELOAD_BOUND_S` of the file changing (plus the kubelet's own sync delay in a cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError, KEY_RELOAD_INTERVAL_S, read_api_keys

log = logging.getLogger("orpheus_gateway.keys")


class KeyFileWatcher:
    def __init__(self, path: str | Path, extra_keys: list[str],
                 apply: Callable[[list[str]], None], interval_s: float = KEY_RELOAD_INTERVAL_S):
        self.path = Path(path)
        self.extra_keys = list(extra_keys)  # from the environment: they stay
        self.apply = apply
        self.interval_s = interval_s
        self._seen: bytes | None = None
        self._complained: str | None = None
        self._task: asyncio.Task | None = None

    def prime(self, content_digest: bytes | None = None) -> None:
        """Remember the current file so the first check does not reload what is loaded."""
        self._seen = content_digest if content_digest is not None else self._digest()

    def _digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def check(self) -> bool:
        """One look at the file; True when new keys were applied."""
        digest = self._digest()
        if digest is None or digest == self._seen:
            if digest is None:
                self._complain("cannot be read")
            return False
        try:
            keys = read_api_keys(self.path, None)
        except ConfigError:
            self._complain("cannot be read")
            return False
        if not keys:
            self._complain("holds no key")
            return False
        self._seen = digest
        self._complained = None
        self.apply(keys + self.extra_keys)
        log.info("API keys reloaded from %s: %d key(s)", self.path, len(keys))
        return True

    def _complain(self, problem: str) -> None:
        if self._complained != problem:
            self._complained = problem
            log.warning("API keys file %s %s; keeping the current keys", self.path, problem)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.check()

    def start(self) -> None:
        if self._task is None:
            self.prime()
            self._task = asyncio.create_task(self._run(), name="api-keys-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
