"""The cross-process lock ``oauth_creds.lock``, with the official Qwen CLI's rules.

Why the same file and rules: the ``qwen`` CLI and other hookproxy processes refresh the same
rotating refresh token; two refreshes racing would kill it for everyone. Exclusive create holds
the lock (content: a random id), a lock older than 10 s by mtime is stale and broken, and
acquisition backs off from 100 ms by x1.5 up to 2 s for at most 20 attempts. Synchronous: run
it in a thread.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "oauth_creds.lock"


class LockTimeout(Exception):
    """Another process held the lock for the whole acquisition budget."""


@dataclass(frozen=True)
class LockRules:
    attempts: int = 20
    first_wait: float = 0.1
    factor: float = 1.5
    max_wait: float = 2.0
    stale_after: float = 10.0


DEFAULT_RULES = LockRules()


def lock_path_for(credentials: Path) -> Path:
    return credentials.parent / LOCK_FILE


def _break_if_stale(path: Path, stale_after: float) -> bool:
    """Rename-then-unlink a stale lock (rename first so two breakers cannot both win)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age <= stale_after:
        return False
    aside = path.with_name(f"{path.name}.stale.{uuid.uuid4()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    aside.unlink(missing_ok=True)
    return True


def acquire(path: Path, rules: LockRules | None = None, sleep: Callable[[float], None] = time.sleep) -> str:
    """Take the lock and return its id; raise :class:`LockTimeout` after ``rules.attempts``."""
    rules = rules or DEFAULT_RULES
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    wait = rules.first_wait
    for _attempt in range(rules.attempts):
        lock_id = str(uuid.uuid4())
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if _break_if_stale(path, rules.stale_after):
                continue
            sleep(wait)
            wait = min(wait * rules.factor, rules.max_wait)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(lock_id)
        return lock_id
    raise LockTimeout(f"could not take the lock {path} after {rules.attempts} attempts (held by another process)")


def release(path: Path, lock_id: str) -> None:
    """Remove the lock if it is still ours (a lock broken as stale may now be someone else's)."""
    try:
        if path.read_text(encoding="utf-8").strip() != lock_id:
            return
        path.unlink()
    except FileNotFoundError:
        pass
