"""The credentials file: path precedence, validation messages, expiry, atomic rewrite."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from hookproxy_qwen_oauth import credentials as cf
from hookproxy_qwen_oauth.testing import write_creds


def test_path_precedence(tmp_path: Path) -> None:
    assert cf.default_path("~/x.json", {}) == Path("~/x.json").expanduser()
    assert cf.default_path(None, {"QWEN_HOME": str(tmp_path)}) == tmp_path / "oauth_creds.json"
    assert cf.default_path(None, {}) == Path.home() / ".qwen" / "oauth_creds.json"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"refresh_token": "r"}, "Missing required field: access_token"),
        ({"access_token": "a"}, "Missing required field: refresh_token"),
        ({"access_token": "", "refresh_token": "r"}, "Invalid access_token: must be a non-empty string"),
        ({"access_token": "a", "refresh_token": 5}, "Invalid refresh_token: must be a non-empty string"),
        ({"access_token": "a", "refresh_token": "r", "expiry_date": "soon"}, "Invalid expiry_date: must be a number"),
        ([1, 2], "the top level must be a JSON object"),
    ],
)
def test_validation_names_path_and_field(tmp_path: Path, data: object, expected: str) -> None:
    path = tmp_path / "oauth_creds.json"
    path.write_text(json.dumps(data))
    snapshot = cf.read(path)
    assert snapshot.credentials is None
    assert snapshot.error is not None and expected in snapshot.error and str(path) in snapshot.error


def test_missing_and_malformed_files_name_the_path_and_keep_secrets_out(tmp_path: Path) -> None:
    missing = cf.read(tmp_path / "nope.json")
    assert missing.error is not None and "not found" in missing.error and "nope.json" in missing.error
    broken = tmp_path / "oauth_creds.json"
    broken.write_text('{"access_token": "secret-token-value", ')
    snapshot = cf.read(broken)
    assert snapshot.error is not None and "Invalid JSON" in snapshot.error and str(broken) in snapshot.error
    assert "secret-token-value" not in snapshot.error
    assert broken.read_text() == '{"access_token": "secret-token-value", '  # reading never changes it
    directory = cf.read(tmp_path)
    assert directory.error is not None and "not a file" in directory.error


def test_expiry_is_epoch_millis_with_a_30_second_buffer(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    make = lambda left: cf.parse({"access_token": "a", "refresh_token": "r",  # noqa: E731
                                  "expiry_date": (now + left) * 1000}, tmp_path)
    assert make(30).is_expired(now)
    assert not make(31).is_expired(now)
    assert make(10).is_expired(now) and not make(10).is_past_expiry(now)
    assert not cf.parse({"access_token": "a", "refresh_token": "r"}, tmp_path).is_expired(now)


def test_repr_never_shows_a_token(tmp_path: Path) -> None:
    creds = cf.parse({"access_token": "AT-SECRET", "refresh_token": "RT-SECRET"}, tmp_path)
    assert "SECRET" not in repr(creds)


def test_atomic_write_mode_0600_keeps_unknown_fields_and_resource_url(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "oauth_creds.json"
    write_creds(path, expires_in=-100, resource_url="portal.qwen.ai", custom={"keep": "me"})
    os.chmod(path, 0o644)
    old = cf.read(path).credentials
    assert old is not None
    data = cf.refreshed(old, {"access_token": "new", "expires_in": 3600}, now=time.time())
    cf.write_atomic(path, data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["custom"] == {"keep": "me"} and saved["resource_url"] == "portal.qwen.ai"
    assert saved["refresh_token"] == "rt-0" and saved["access_token"] == "new"
    assert saved["expiry_date"] > time.time() * 1000 + 3500_000
    assert [p.name for p in path.parent.iterdir()] == ["oauth_creds.json"]  # no temp file left


def test_refresh_reply_replaces_rotated_fields(tmp_path: Path) -> None:
    old = cf.parse({"access_token": "a", "refresh_token": "r", "resource_url": "old.example"}, tmp_path)
    data = cf.refreshed(old, {"access_token": "b", "refresh_token": "r2", "expires_in": 10,
                              "resource_url": "new.example"}, now=0)
    assert (data["refresh_token"], data["resource_url"], data["expiry_date"]) == ("r2", "new.example", 10_000)


def test_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    write_creds(real)
    link = tmp_path / "oauth_creds.json"
    link.symlink_to(real)
    cf.write_atomic(link, {"access_token": "x", "refresh_token": "y"})
    assert link.is_symlink() and json.loads(real.read_text())["access_token"] == "x"
