"""The cross-process lock file, with the official client's rules."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from hookproxy_qwen_oauth import lockfile
from hookproxy_qwen_oauth.lockfile import LockRules, LockTimeout

FAST = LockRules(attempts=20, first_wait=0.01, factor=1.5, max_wait=0.05, stale_after=10.0)


def test_acquire_and_release(tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.lock"
    lock_id = lockfile.acquire(path, FAST)
    assert path.read_text() == lock_id
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    lockfile.release(path, lock_id)
    assert not path.exists()
    lockfile.release(path, lock_id)  # ENOENT is ignored


def test_a_held_lock_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.lock"
    path.write_text("other-process")
    threading.Timer(0.1, path.unlink).start()
    lock_id = lockfile.acquire(path, FAST)
    assert path.read_text() == lock_id


def test_a_stale_lock_is_broken_at_once(tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.lock"
    path.write_text("crashed-process")
    old = time.time() - 11
    os.utime(path, (old, old))
    sleeps: list[float] = []
    lock_id = lockfile.acquire(path, FAST, sleep=sleeps.append)
    assert sleeps == [] and path.read_text() == lock_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oauth_creds.lock"]


def test_backoff_schedule_and_timeout(tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.lock"
    path.write_text("busy")
    sleeps: list[float] = []
    with pytest.raises(LockTimeout, match="oauth_creds.lock"):
        lockfile.acquire(path, LockRules(), sleep=sleeps.append)
    assert len(sleeps) == 20
    assert sleeps[:3] == pytest.approx([0.1, 0.15, 0.225]) and max(sleeps) == 2.0
    assert path.read_text() == "busy"


def test_release_leaves_someone_elses_lock(tmp_path: Path) -> None:
    path = tmp_path / "oauth_creds.lock"
    path.write_text("theirs")
    lockfile.release(path, "mine")
    assert path.read_text() == "theirs"
