"""The first config a newcomer writes: one backend is the default, unusable backends are refused
locally, bad values name their real source, and mistakes stop the start with one line."""

from __future__ import annotations

import logging

import openai
import pytest

import hookproxy
from hookproxy.errors import ConfigError
from hookproxy.factory import build_proxy
from hookproxy.testing import write_config
from tests.conftest import core_pm, upstream_block

USER = [{"role": "user", "content": "hello"}]


class ServesUnconfigured(hookproxy.Backend):
    serves_unconfigured = True


class NeedsConfig(hookproxy.HTTPBackend):
    pass


class Connectors:
    """Two third-party connectors: one that serves without configuration, one that needs it."""

    @hookproxy.hookimpl
    def resolve_backend(self, instance):
        if instance.connector == "virtual":
            return ServesUnconfigured(instance)
        if instance.connector == "shouty":
            return NeedsConfig(instance)
        return None


def third_party_pm():
    return core_pm(("virtual", Connectors()), ("shouty", object()))


def test_one_configured_backend_is_the_default_although_other_plugins_are_installed(
        write_config, make_proxy, fake_upstream):
    path = write_config({"backends": {"up": upstream_block(fake_upstream)}})
    running = make_proxy(path, pm=third_party_pm())
    assert set(running.proxy.backends) == {"up", "virtual.default"}  # shouty.default was not kept
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
    reply = sdk.chat.completions.create(model="m1", messages=USER)
    assert reply.choices[0].message.content == "echo: hello"
    assert fake_upstream.requests_to()[-1].json["model"] == "m1"


def test_an_unusable_backend_is_refused_locally_with_503_naming_the_env_var(tmp_path, make_proxy, fake_upstream):
    folder = tmp_path / "config"
    path = write_config(folder, {"default_backend": "keyless"}, {
        "openai-compatible.keyless": {"api_url": fake_upstream.url, "api_key": "${KEYLESS_API_KEY:-}"}})
    running = make_proxy(path, pm=core_pm())
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="m1", messages=USER)
    assert caught.value.status_code == 503
    assert "KEYLESS_API_KEY" in caught.value.message
    assert fake_upstream.requests == []  # nothing was sent


def test_failover_moves_past_an_unusable_backend_at_once(write_config, make_proxy, fake_upstream, caplog):
    path = write_config({"backends": {"keyless": upstream_block(fake_upstream, api_key=""),
                                      "good": upstream_block(fake_upstream)}})
    running = make_proxy(path, pm=core_pm())
    sdk = openai.OpenAI(base_url=running.url + "/v1", api_key="none", max_retries=0)
    with caplog.at_level(logging.INFO, logger="hookproxy.failover"):
        reply = sdk.chat.completions.create(model="keyless:m1|good:m2", messages=USER)
    assert reply.choices[0].message.content == "echo: hello"
    # the keyless backend was never contacted, nor retried: the one request is good's
    assert [request.json["model"] for request in fake_upstream.requests_to()] == ["m2"]
    assert "failing over from keyless" in caplog.text and "not usable" in caplog.text


@pytest.mark.parametrize(("source", "expected"), [
    ("env", "environment variable HOOKPROXY_MAX_SILENT_WAIT"),
    ("cli", "--max-silent-wait"),
    ("yaml", "failure_handling.max_silent_wait"),
])
def test_an_invalid_value_names_where_it_came_from(tmp_path, source, expected):
    config = {"failure_handling": {"max_silent_wait": -1}} if source == "yaml" else {}
    path = write_config(tmp_path, config)
    env = {"HOOKPROXY_MAX_SILENT_WAIT": "-1"} if source == "env" else {}
    cli = {"max_silent_wait": -1} if source == "cli" else {}
    with pytest.raises(ConfigError) as caught:
        build_proxy(path, cli, pm=core_pm(), env=env)
    assert caught.value.message.startswith(expected if source != "yaml" else str(path))
    assert expected in caught.value.message
    if source != "yaml":
        assert str(path) not in caught.value.message


@pytest.mark.parametrize("level", ["debug", "Warning", "INFO"])
def test_log_levels_are_accepted_in_any_case(tmp_path, level):
    path = write_config(tmp_path, {"log_level": level})
    assert build_proxy(path, pm=core_pm(), env={}).settings.log_level == level.upper()
    assert build_proxy(None, pm=core_pm(), env={"HOOKPROXY_LOG_LEVEL": level}).settings.log_level == level.upper()


def test_a_failover_route_naming_an_unknown_backend_is_a_start_up_error(tmp_path, fake_upstream):
    path = write_config(tmp_path, {
        "backends": {"up": upstream_block(fake_upstream)},
        "failover_routes": {"coding": {"elements": ["up:m1", "upp:m2"]}},
    })
    expected = r"failover_routes\.coding names unknown backend 'upp'.*known backends: .*\bup\b"
    with pytest.raises(ConfigError, match=expected):
        build_proxy(path, pm=core_pm(), env={})
