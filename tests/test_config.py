"""Configuration: YAML, instance files, ${VAR}, precedence, and errors that name the fix."""

from __future__ import annotations

import pytest

import hookproxy.openai_compatible
from hookproxy.config import load_config
from hookproxy.errors import ConfigError
from hookproxy.factory import build_proxy
from hookproxy.plugins import make_plugin_manager
from hookproxy.testing import write_config
from tests.conftest import core_pm


def test_unknown_root_key_names_the_key_and_the_file(tmp_path):
    path = write_config(tmp_path, {"hots": "0.0.0.0"})
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "'hots'" in caught.value.message and str(path) in caught.value.message


def test_env_vars_expand_and_a_missing_one_is_a_clear_error(tmp_path):
    path = write_config(tmp_path, {"backends": {"a": {"connector": "openai-compatible",
                                                      "api_url": "http://127.0.0.1:1/v1", "api_key": "${KEY_A}"}}})
    assert load_config(path, env={"KEY_A": "s3cret"}).instances[0].api_key == "s3cret"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "${KEY_A}" in caught.value.message and "export KEY_A" in caught.value.message
    assert "backends.a.api_key" in caught.value.message


def test_env_default_syntax_allows_an_empty_value(tmp_path):
    path = write_config(tmp_path, {"backends": {"a": {"connector": "openai-compatible",
                                                      "api_url": "http://x/v1", "api_key": "${NOPE:-}"}}})
    assert load_config(path, env={}).instances[0].api_key == ""


def test_precedence_is_cli_then_env_then_yaml_then_default(tmp_path):
    path = write_config(tmp_path, {"port": 9001, "timeout": 5, "log_level": "DEBUG"})
    settings = load_config(path, cli={"port": 9003}, env={"HOOKPROXY_PORT": "9002", "HOOKPROXY_TIMEOUT": "7"}).settings
    assert settings.port == 9003
    assert settings.timeout == 7
    assert settings.log_level == "DEBUG"
    assert settings.host == "127.0.0.1"


def test_api_keys_come_from_yaml_env_comma_list_and_cli(tmp_path):
    path = write_config(tmp_path, {"auth": {"api_keys": ["a"]}})
    assert load_config(path, env={}).settings.api_keys == ["a"]
    assert load_config(path, env={"HOOKPROXY_API_KEYS": "b, c"}).settings.api_keys == ["b", "c"]
    assert load_config(path, cli={"api_keys": ["d"]}, env={"HOOKPROXY_API_KEYS": "b"}).settings.api_keys == ["d"]


def test_instance_files_get_ids_and_short_aliases(tmp_path):
    path = write_config(tmp_path, {}, {
        "openai-compatible.minimax": {"connector": "openai-compatible", "api_url": "http://127.0.0.1:1/v1"},
        "openai-compatible.dashscope": {"api_url": "http://127.0.0.1:2/v1"},
    })
    proxy = build_proxy(path, pm=core_pm(), env={})
    assert set(proxy.backends) == {"openai-compatible.minimax", "openai-compatible.dashscope"}
    assert proxy.lookup("minimax").id == "openai-compatible.minimax"
    assert proxy.lookup("openai-compatible.dashscope").id == "openai-compatible.dashscope"
    assert proxy.display_name(proxy.lookup("minimax")) == "minimax"


def test_plugin_extra_keys_are_validated_by_the_plugin(tmp_path):
    path = write_config(tmp_path, {}, {"openai-compatible.x": {"api_url": "http://127.0.0.1:1/v1",
                                                               "extra": {"hedaers": {}}}})
    with pytest.raises(ConfigError) as caught:
        build_proxy(path, pm=core_pm(), env={})
    assert "openai-compatible.x" in caught.value.message and "hedaers" in caught.value.message


def test_bad_api_url_and_unknown_backend_keys_are_errors(tmp_path):
    path = write_config(tmp_path, {"backends": {"a": {"connector": "openai-compatible", "api_url": "ftp://x"}}})
    with pytest.raises(ConfigError, match="api_url"):
        load_config(path, env={})
    path = write_config(tmp_path, {"backends": {"a": {"connector": "openai-compatible", "api_ur": "http://x"}}})
    with pytest.raises(ConfigError, match="api_ur"):
        load_config(path, env={})
    path = write_config(tmp_path, {"backends": {"not_a_setting": True}})
    with pytest.raises(ConfigError, match="backends.not_a_setting"):
        build_proxy(path, pm=core_pm(), env={})


def test_instance_file_with_yaml_error_aborts_with_its_line(tmp_path):
    path = write_config(tmp_path, {})
    folder = tmp_path / "backends" / "backend-instances"
    folder.mkdir(parents=True)
    (folder / "openai-compatible.bad.yaml").write_text("api_url: [unclosed\n")
    with pytest.raises(ConfigError, match="openai-compatible.bad.yaml line"):
        load_config(path, env={})


def test_an_instance_of_an_unknown_connector_is_a_start_up_error(tmp_path):
    path = write_config(tmp_path, {}, {"nosuch.thing": {"extra": {}}})
    with pytest.raises(ConfigError, match=r"nosuch\.thing.*no installed plugin provides connector 'nosuch'.*"
                                          r"openai-compatible"):
        build_proxy(path, pm=core_pm(), env={})


def test_an_instance_of_a_disabled_plugin_is_skipped_and_reported(tmp_path):
    path = write_config(tmp_path, {}, {"nosuch.thing": {"extra": {}}})
    pm = make_plugin_manager(load_entrypoints=False, block=["nosuch"],
                             extra=[("openai-compatible", hookproxy.openai_compatible)])
    proxy = build_proxy(path, pm=pm, env={})
    assert "HOOKPROXY_DISABLE_PLUGINS" in proxy.skipped["nosuch.thing"]


def test_failover_routes_come_from_yaml_or_a_json_env_var(tmp_path):
    path = write_config(tmp_path, {"failover_routes": {"coding": {"elements": ["a:m1", "b:m2"]}}})
    assert load_config(path, env={}).settings.failover_routes["coding"].elements == ["a:m1", "b:m2"]
    env = {"HOOKPROXY_FAILOVER_ROUTES": '{"fast": {"policy": "round-robin", "elements": ["c:m3"]},'
                                        ' "coding": {"elements": ["d:m4"]}}'}
    routes = load_config(path, env=env).settings.failover_routes  # merged by name, env wins
    assert routes["fast"].policy == "round-robin" and routes["coding"].elements == ["d:m4"]
    with pytest.raises(ConfigError, match="HOOKPROXY_FAILOVER_ROUTES"):
        load_config(path, env={"HOOKPROXY_FAILOVER_ROUTES": "{nope"})
