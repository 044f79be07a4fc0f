"""Two hosts, each with its own copy of the credentials file, sharing a private redis-server:
one token refresh between them, the new token saved on both, and one connector-wide backoff."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx

from hookproxy.redis_state import RedisState
from hookproxy.testing import FakeUpstream, RedisServer, eventually_async, run_cli_proxy, write_config
from hookproxy_qwen_oauth.ratelimit import BACKOFF_TABLE, Backoff
from hookproxy_qwen_oauth.testing import QwenService, write_creds

from .conftest import instance


def host_config(directory: Path, upstream: FakeUpstream, creds: Path) -> Path:
    return write_config(directory, {"default_backend": "qwen-oauth"},
                        {"qwen-oauth.test": instance(upstream, creds)})


def test_two_hosts_with_separate_credential_files_refresh_once(
    qwen: QwenService, fake_upstream: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    creds = [tmp_path / f"host{n}" / "qwen" / "oauth_creds.json" for n in (1, 2)]
    for path in creds:
        write_creds(path, expires_in=-60, custom="kept")  # both copies expired: both hosts must refresh
    qwen.token_stall = 0.5  # the first refresh is still running when the other host wants one
    configs = [host_config(tmp_path / f"host{n}" / "config", fake_upstream, path) for n, path in zip((1, 2), creds,
                                                                                                        strict=True)]
    answers: dict[int, httpx.Response] = {}
    with run_cli_proxy("--config", str(configs[0]), "--state", redis_server.url) as (one, _), \
            run_cli_proxy("--config", str(configs[1]), "--state", redis_server.url) as (two, _):

        def ask(index: int, url: str) -> None:
            answers[index] = httpx.post(url + "/v1/chat/completions", timeout=30,
                                        json={"model": "coder-model", "messages": [{"role": "user", "content": "hi"}]})

        threads = [threading.Thread(target=ask, args=(index, url)) for index, url in enumerate((one, two))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert [answers[index].status_code for index in (0, 1)] == [200, 200], [a.text for a in answers.values()]
    assert qwen.refreshes == 1 and len(qwen.token_requests) == 1
    for path in creds:
        saved = json.loads(path.read_text())
        assert (saved["access_token"], saved["refresh_token"], saved["custom"]) == ("at-1", "rt-1", "kept")
        assert (path.stat().st_mode & 0o777) == 0o600
        assert not (path.parent / "oauth_creds.lock").exists()
    chat_tokens = {r.headers["authorization"] for r in fake_upstream.requests_to("/v1/chat/completions")}
    assert chat_tokens == {"Bearer at-1"}


async def test_the_connector_wide_backoff_is_shared_between_hosts(redis_server: RedisServer) -> None:
    one, two = RedisState(redis_server.url), RedisState(redis_server.url)
    await one.start()
    await two.start()
    try:
        here, there = Backoff(one.table(BACKOFF_TABLE), "qwen-oauth.test"), Backoff(two.table(BACKOFF_TABLE),
                                                                                      "qwen-oauth.test")
        here.record(8.0)
        assert 7 < here.remaining() <= 8
        await eventually_async(lambda: there.remaining() > 7, what="the backoff reaching the other host")
    finally:
        await one.aclose()
        await two.aclose()
