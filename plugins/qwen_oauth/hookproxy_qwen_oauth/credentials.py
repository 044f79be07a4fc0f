"""The Qwen CLI's credentials file: where it is, what a valid one holds, and writing it safely.

The file belongs to the user's ``qwen`` CLI, which reads and rewrites it concurrently. So reading
never changes it, and writing is atomic (temp file in the same folder, fsync, rename, mode 0600)
and keeps every field we do not know. These functions are synchronous on purpose: callers run
them in a thread (``asyncio.to_thread``) so the event loop never waits on the disk.
Nothing here puts a token into a message: errors name the path and the field only.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "oauth_creds.json"
#: How each problem with the file is fixed; appended once, by ``read``.
CREATE_HINT = "run `qwen auth` to create it"
REWRITE_HINT = "run `qwen auth` to sign in again, which rewrites it"
#: A token with this many seconds or fewer left counts as expired (as in the official client).
EXPIRY_BUFFER_SECONDS = 30.0


class CredentialsError(Exception):
    """The credentials file is missing or invalid; the message names the path and the field."""


def default_path(configured: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``extra.credentials_path``, else ``$QWEN_HOME/oauth_creds.json``, else ``~/.qwen/...``."""
    env = os.environ if env is None else env
    if configured:
        return Path(configured).expanduser()
    qwen_home = env.get("QWEN_HOME")
    if qwen_home:
        return Path(qwen_home).expanduser() / CREDENTIALS_FILE
    try:
        home = Path.home()
    except RuntimeError:  # no home directory: the official client falls back to the temp dir
        home = Path(tempfile.gettempdir())
    return home / ".qwen" / CREDENTIALS_FILE


@dataclass(frozen=True)
class Credentials:
    """One validated credentials file. ``raw`` keeps every field for rewriting (never logged)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    token_type: str
    expiry_date: float | None
    resource_url: str | None
    raw: dict[str, Any] = field(repr=False)

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expiry_date is None:
            return None
        return self.expiry_date / 1000.0 - (time.time() if now is None else now)

    def is_expired(self, now: float | None = None) -> bool:
        """Expired with 30 s or less left; without ``expiry_date`` it is assumed valid."""
        left = self.seconds_left(now)
        return left is not None and left <= EXPIRY_BUFFER_SECONDS

    def is_past_expiry(self, now: float | None = None) -> bool:
        """Really expired (no buffer): the fallback when a refresh fails inside the buffer."""
        left = self.seconds_left(now)
        return left is not None and left <= 0


def _string(data: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    if key not in data:
        if required:
            raise CredentialsError(f"{where}: Missing required field: {key}")
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise CredentialsError(f"{where}: Invalid {key}: must be a non-empty string")
    return value


def parse(data: Any, path: Path) -> Credentials:
    """Validate parsed JSON; the error names ``path`` and the first bad field."""
    where = f"Qwen OAuth credentials file {path}"
    if not isinstance(data, dict):
        raise CredentialsError(f"{where}: the top level must be a JSON object")
    access = _string(data, "access_token", where, required=True)
    refresh = _string(data, "refresh_token", where, required=True)
    token_type = _string(data, "token_type", where, required=False) or "Bearer"
    resource_url = _string(data, "resource_url", where, required=False)
    expiry = data.get("expiry_date")
    if expiry is not None and (isinstance(expiry, bool) or not isinstance(expiry, int | float)):
        raise CredentialsError(f"{where}: Invalid expiry_date: must be a number (timestamp in milliseconds)")
    assert access is not None and refresh is not None
    return Credentials(access, refresh, token_type, None if expiry is None else float(expiry), resource_url, dict(data))


@dataclass(frozen=True)
class Snapshot:
    """What the file held at ``mtime_ns``: credentials, or the error that explains why not."""

    credentials: Credentials | None
    error: str | None
    mtime_ns: int | None


def stat_mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def read(path: Path) -> Snapshot:
    """Read and validate the file. Never raises: a problem is a Snapshot with ``error``."""
    try:
        info = path.stat()
        if not path.is_file():
            return Snapshot(None, f"Qwen OAuth credentials path {path} exists but is not a file; point "
                                  "extra.credentials_path at the file `qwen auth` writes", info.st_mtime_ns)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Snapshot(None, f"Qwen OAuth credentials file not found at {path}; {CREATE_HINT}", None)
    except PermissionError:
        return Snapshot(None, f"Permission denied reading Qwen OAuth credentials file: {path}; make it "
                              "readable by the user running hookproxy", None)
    except (OSError, UnicodeDecodeError) as exc:
        return Snapshot(None, f"cannot read Qwen OAuth credentials file {path}: {type(exc).__name__}; "
                              f"{REWRITE_HINT}", None)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the text itself may hold a token.
        message = (f"Invalid JSON in credentials file {path}: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                   f"{REWRITE_HINT}")
        return Snapshot(None, message, info.st_mtime_ns)
    try:
        return Snapshot(parse(data, path), None, info.st_mtime_ns)
    except CredentialsError as exc:
        return Snapshot(None, f"{exc}; {REWRITE_HINT}", info.st_mtime_ns)


def write_atomic(path: Path, data: Mapping[str, Any]) -> int:
    """Replace the file atomically with mode 0600 and return its new mtime, as the official client writes it.

    A symlinked file is written through to its target, so a user's link keeps working. On any
    failure the temp file is removed and the original is untouched.
    """
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = target.with_name(f"{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target.stat().st_mtime_ns


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def refreshed(old: Credentials, reply: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
    """The new file content after a refresh reply: old fields kept unless replaced."""
    now = time.time() if now is None else now
    data = dict(old.raw)
    data["access_token"] = reply["access_token"]
    data["token_type"] = reply.get("token_type") or old.token_type
    data["expiry_date"] = int((now + float(reply["expires_in"])) * 1000)
    if isinstance(reply.get("refresh_token"), str) and reply["refresh_token"]:
        data["refresh_token"] = reply["refresh_token"]
    if isinstance(reply.get("resource_url"), str) and reply["resource_url"]:
        data["resource_url"] = reply["resource_url"]
    return data
