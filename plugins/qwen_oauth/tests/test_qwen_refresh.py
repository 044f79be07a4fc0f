"""Refresh: single flight, cross-process lock, dead refresh token, unreachable endpoint, fallback."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import respx

from hookproxy import AuthenticationFailed
from hookproxy.testing import Canned, FakeUpstream
from hookproxy_qwen_oauth import lockfile
from hookproxy_qwen_oauth.oauth import CLIENT_ID, TokenManager, TokenRefreshFailed
from hookproxy_qwen_oauth.testing import TOKEN_PATH, QwenService, write_creds

FAST = lockfile.LockRules(first_wait=0.01, max_wait=0.05)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture
def manager(fake_upstream: FakeUpstream, creds_path: Path,
            client: httpx.AsyncClient) -> Callable[..., TokenManager]:
    def make(url: str | None = None, path: Path = creds_path) -> TokenManager:
        return TokenManager(path, url or fake_upstream.base_url + TOKEN_PATH, lambda: client, lock_rules=FAST)

    return make


async def test_twenty_concurrent_callers_cause_one_refresh(qwen: QwenService, creds_path: Path,
                                                           manager: Callable[..., TokenManager]) -> None:
    write_creds(creds_path, expires_in=10, custom="kept")
    qwen.token_stall = 0.1
    tokens = manager()
    results = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert {c.access_token for c in results} == {"at-1"}
    assert qwen.refreshes == 1 and len(qwen.token_requests) == 1
    assert qwen.token_requests[0] == {"grant_type": "refresh_token", "refresh_token": "rt-0", "client_id": CLIENT_ID}
    saved = json.loads(creds_path.read_text())
    assert saved["access_token"] == "at-1" and saved["refresh_token"] == "rt-1" and saved["custom"] == "kept"
    assert (creds_path.stat().st_mode & 0o777) == 0o600
    assert not (creds_path.parent / "oauth_creds.lock").exists()


async def test_lock_held_by_another_process_is_waited_for_and_its_refresh_reused(
    qwen: QwenService, creds_path: Path, manager: Callable[..., TokenManager]
) -> None:
    write_creds(creds_path, expires_in=-5)
    lock = creds_path.parent / "oauth_creds.lock"
    lock.write_text("the-qwen-cli")

    def other_process_refreshes() -> None:
        write_creds(creds_path, access="at-0", refresh="rt-0", expires_in=3600)
        lock.unlink()

    threading.Timer(0.15, other_process_refreshes).start()
    credentials = await manager().token()
    assert credentials.access_token == "at-0" and qwen.refreshes == 0 and not qwen.token_requests


async def test_mtime_change_is_picked_up_without_restart(qwen: QwenService, creds_path: Path,
                                                         manager: Callable[..., TokenManager]) -> None:
    write_creds(creds_path, access="first")
    tokens = manager()
    tokens.check_interval = 0
    assert (await tokens.token()).access_token == "first"
    write_creds(creds_path, access="second")
    os.utime(creds_path, ns=(creds_path.stat().st_atime_ns, creds_path.stat().st_mtime_ns + 1_000_000))
    assert (await tokens.token()).access_token == "second"


async def test_dead_refresh_token_is_401_run_qwen_auth_and_file_untouched(
    qwen: QwenService, creds_path: Path, manager: Callable[..., TokenManager]
) -> None:
    write_creds(creds_path, refresh="rt-spent", expires_in=-5)
    before = creds_path.read_bytes()
    tokens = manager()
    with pytest.raises(AuthenticationFailed) as caught:
        await tokens.token()
    assert "qwen auth" in caught.value.message and str(creds_path) in caught.value.message
    assert "rt-spent" not in caught.value.message
    assert creds_path.read_bytes() == before
    assert not tokens.state().usable and "qwen auth" in (tokens.state().reason or "")
    with pytest.raises(AuthenticationFailed):  # remembered: no second call to the token endpoint
        await tokens.token()
    assert len(qwen.token_requests) == 1
    write_creds(creds_path, refresh="rt-0", expires_in=-5)  # the user ran `qwen auth`
    assert (await tokens.token()).access_token == "at-1"


async def test_unreachable_token_endpoint_names_the_key_and_leaves_the_file(
    creds_path: Path, manager: Callable[..., TokenManager]
) -> None:
    write_creds(creds_path, expires_in=-5)
    before = creds_path.read_bytes()
    with pytest.raises(TokenRefreshFailed) as caught:
        await manager("http://127.0.0.1:9/api/v1/oauth2/token").token()
    assert "extra.token_url" in caught.value.message and str(creds_path) in caught.value.message
    assert caught.value.status == 502
    assert creds_path.read_bytes() == before


async def test_failed_refresh_inside_the_buffer_uses_the_still_valid_token(
    qwen: QwenService, creds_path: Path, manager: Callable[..., TokenManager]
) -> None:
    write_creds(creds_path, expires_in=20)
    qwen.token_answer = Canned(status=500, json={"error": "server"})
    assert (await manager().token()).access_token == "at-0"


async def test_rejected_token_forces_refresh_once(qwen: QwenService, creds_path: Path,
                                                  manager: Callable[..., TokenManager]) -> None:
    write_creds(creds_path, expires_in=3600)
    tokens = manager()
    results = await asyncio.gather(*(tokens.token(rejected="at-0") for _ in range(5)))
    assert {c.access_token for c in results} == {"at-1"} and qwen.refreshes == 1


@respx.mock
async def test_bad_token_replies_are_refresh_failures(creds_path: Path) -> None:
    write_creds(creds_path, expires_in=-5)
    route = respx.post("https://token.test/t")
    async with httpx.AsyncClient() as http:
        tokens = TokenManager(creds_path, "https://token.test/t", lambda: http, lock_rules=FAST)
        for reply in (httpx.Response(200, text="not json"), httpx.Response(200, json={"access_token": ""}),
                      httpx.Response(200, json={"access_token": "x", "expires_in": "soon"})):
            route.mock(return_value=reply)
            with pytest.raises(TokenRefreshFailed):
                await tokens.token()
    assert json.loads(creds_path.read_text())["access_token"] == "at-0"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_missing_file_is_401_naming_the_path(creds_path: Path, manager: Callable[..., TokenManager]) -> None:
    with pytest.raises(AuthenticationFailed, match="not found"):
        await manager().token()
    assert not creds_path.parent.exists()
