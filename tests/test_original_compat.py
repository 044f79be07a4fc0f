"""What users of the original proxy already send and configure keeps working here.

Proxy keys in Gemini's places, the original's flags and environment variables, and
``model_defaults``; each through the public surface (HTTP, the CLI, files on disk).
"""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from hookproxy.testing import run_cli_proxy, write_config

from .conftest import PROXY_KEY, upstream_block
from .test_cli import CORE_ONLY, assert_one_line_error, hookproxy

USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "m1", "messages": USER}


@pytest.mark.parametrize("where", ["x-goog-api-key", "query"])
def test_gemini_style_proxy_keys_are_accepted(proxy_for, where):
    running = proxy_for()
    url = running.url + "/v1/chat/completions"
    if where == "query":
        response = httpx.post(url, params={"api_key": PROXY_KEY}, json=BODY)
    else:
        response = httpx.post(url, headers={where: PROXY_KEY}, json=BODY)
    assert response.status_code == 200
    assert httpx.get(running.url + "/v1/models", params={"api_key": PROXY_KEY}).status_code == 200


@pytest.mark.parametrize("where", ["x-goog-api-key", "query"])
def test_a_wrong_gemini_style_key_is_401_and_never_logged(proxy_for, caplog, where):
    caplog.set_level(logging.DEBUG)
    running = proxy_for()
    wrong = "sk-wrong-query-key-987"
    url = running.url + "/v1/chat/completions"
    if where == "query":
        response = httpx.post(url, params={"api_key": wrong}, json=BODY)
    else:
        response = httpx.post(url, headers={where: wrong}, json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert wrong not in response.text
    proxy_side = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not any(wrong in line for line in proxy_side)


# --- the original's flags and environment variables, through the CLI -----------------------------


def config_with_up(tmp_path, fake_upstream, **extra):
    return write_config(tmp_path / "cfg", {"backends": {"up": upstream_block(fake_upstream)}, **extra})


def test_the_original_environment_variables_configure_the_proxy_and_are_named_in_the_log(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    log_file = tmp_path / "proxy.log"
    env = {**CORE_ONLY, "LLM_BACKEND": "up", "API_KEYS": "sk-a, sk-b", "LOG_FILE": str(log_file),
           "LOG_LEVEL": "DEBUG"}
    with run_cli_proxy("--config", str(path), env=env) as (url, _process):
        assert httpx.post(url + "/v1/chat/completions", json=BODY).status_code == 401  # API_KEYS turned auth on
        client = openai.OpenAI(base_url=url + "/v1", api_key="sk-b", max_retries=0)
        reply = client.chat.completions.create(model="m1", messages=USER)  # LLM_BACKEND made `up` the default
        assert reply.choices[0].message.content == "echo: hi"
    text = log_file.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if "original proxy's environment variables" in line)
    for original, target in (("LLM_BACKEND", "HOOKPROXY_DEFAULT_BACKEND"), ("API_KEYS", "HOOKPROXY_API_KEYS"),
                             ("LOG_FILE", "HOOKPROXY_LOG_FILE"), ("LOG_LEVEL", "HOOKPROXY_LOG_LEVEL")):
        assert f"{original} as {target}" in line
    assert "INFO" in line and "sk-a" not in text and "sk-b" not in text


def test_a_hookproxy_variable_wins_over_the_original_name(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    log_file = tmp_path / "proxy.log"
    env = {**CORE_ONLY, "LLM_BACKEND": "nope", "HOOKPROXY_DEFAULT_BACKEND": "up"}
    with run_cli_proxy("--config", str(path), "--log", str(log_file), env=env) as (url, _process):
        assert httpx.post(url + "/v1/chat/completions", json=BODY).status_code == 200
    assert "ignored: LLM_BACKEND (because HOOKPROXY_DEFAULT_BACKEND is set)" in log_file.read_text(encoding="utf-8")


def test_log_file_flag_appends_the_log_and_abbreviations_are_refused(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    log_file = tmp_path / "flag.log"
    with run_cli_proxy("--config", str(path), "--log", str(log_file), "--default-backend", "up",
                       "--log-level", "DEBUG", env=CORE_ONLY) as (url, _process):
        assert httpx.post(url + "/v1/chat/completions", json=BODY).status_code == 200
    assert log_file.read_text(encoding="utf-8").strip()
    assert_one_line_error(hookproxy("--log-lev", "INFO"), "--log-lev")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_static_route_sends_every_request_to_backend_and_model(tmp_path, fake_upstream, how):
    path = config_with_up(tmp_path, fake_upstream)
    args = ["--static-route", "up:m2"] if how == "flag" else []
    env = {**CORE_ONLY, **({"STATIC_ROUTE": "up:m2"} if how == "env" else {})}
    with run_cli_proxy("--config", str(path), *args, env=env) as (url, _process):
        response = httpx.post(url + "/v1/chat/completions", json={"model": "whatever", "messages": USER})
    assert response.status_code == 200
    assert response.headers["x-hookproxy-backend"] == "up"
    assert fake_upstream.requests_to()[-1].json["model"] == "m2"


def test_static_route_without_a_backend_is_refused(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    assert_one_line_error(hookproxy("--config", str(path), "--static-route", "m2"), "--static-route", "BACKEND:MODEL")
    assert_one_line_error(hookproxy("--config", str(path), env={"STATIC_ROUTE": "m2"}), "STATIC_ROUTE",
                          "BACKEND:MODEL")


@pytest.mark.parametrize("args", [["--default-backend", "nope"], ["--default-backend", "up|nope:m1"],
                                  ["--force-model", "nope:m1"]])
def test_an_unknown_default_backend_is_a_start_up_error_naming_the_known_ones(tmp_path, fake_upstream, args):
    path = config_with_up(tmp_path, fake_upstream)
    assert_one_line_error(hookproxy("--config", str(path), *args), "'nope'", "known backends: ", " up")


def test_an_unknown_default_backend_from_the_original_variable_is_refused_too(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    assert_one_line_error(hookproxy("--config", str(path), env={"LLM_BACKEND": "nope"}), "'nope'", "up")


# --- model_defaults: per-model default parameters, the lowest precedence ------------------------

DEFAULTS = {"up:m1": {"temperature": 0.2, "max_tokens": 50}, "m1": {"temperature": 0.7, "top_p": 0.5},
            "m2": {"seed": 3}}


def test_model_defaults_fill_only_what_the_client_did_not_send(proxy_for, fake_upstream):
    running = proxy_for({"model_defaults": DEFAULTS})
    client = openai.OpenAI(base_url=running.url + "/v1", api_key=PROXY_KEY, max_retries=0)
    client.chat.completions.create(model="m1", messages=USER)
    sent = fake_upstream.requests_to()[-1].json
    assert (sent["temperature"], sent["max_tokens"], sent["top_p"]) == (0.2, 50, 0.5)  # up:m1 beats m1
    client.chat.completions.create(model="up:m1", messages=USER, temperature=0.9)
    assert fake_upstream.requests_to()[-1].json["temperature"] == 0.9  # the client's own field wins
    client.chat.completions.create(model="up:m1?temperature=0.3", messages=USER, temperature=0.9)
    assert fake_upstream.requests_to()[-1].json["temperature"] == 0.3  # URI parameters win over both
    client.chat.completions.create(model="m2", messages=USER)
    sent = fake_upstream.requests_to()[-1].json
    assert sent["seed"] == 3 and "temperature" not in sent


def test_model_defaults_from_the_environment_as_json(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream, default_backend="up")
    env = {**CORE_ONLY, "HOOKPROXY_MODEL_DEFAULTS": '{"m1": {"temperature": 0.4}}'}
    with run_cli_proxy("--config", str(path), env=env) as (url, _process):
        assert httpx.post(url + "/v1/chat/completions", json=BODY).status_code == 200
    assert fake_upstream.requests_to()[-1].json["temperature"] == 0.4


def test_a_model_default_for_the_stream_flag_is_refused(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream, model_defaults={"m1": {"stream": True}})
    assert_one_line_error(hookproxy("--config", str(path)), "model_defaults", "'stream'")


def test_an_unwritable_log_file_is_a_one_line_error(tmp_path, fake_upstream):
    path = config_with_up(tmp_path, fake_upstream)
    missing = tmp_path / "no-such-dir" / "proxy.log"
    assert_one_line_error(hookproxy("--config", str(path), "--log", str(missing)), str(missing), "--log")
