"""Every flag, env var and YAML key of the hybrid's settings (env names with the HOOKPROXY_ prefix)."""

from __future__ import annotations

import pytest

from hookproxy.cli import build_parser
from hookproxy.errors import ConfigError
from hookproxy.factory import build_proxy
from hookproxy.testing import write_config
from hookproxy_hybrid import HybridSettings

FLAGS = {
    "--hybrid-backend-repeat-messages": ("hybrid_backend_repeat_messages", True),
    "--reasoning-injection-probability=0.25": ("reasoning_injection_probability", 0.25),
    "--reasoning_injection_probability=0.5": ("reasoning_injection_probability", 0.5),
    "--hybrid-reasoning-model-timeout=7": ("hybrid_reasoning_model_timeout", 7),
    "--hybrid-reasoning-force-initial-turns=0": ("hybrid_reasoning_force_initial_turns", 0),
    "--hybrid-execution-model-timeout=9": ("hybrid_execution_model_timeout", 9),
    "--hybrid-reasoning-latency-threshold=0": ("hybrid_reasoning_latency_threshold", 0.0),
    "--hybrid-reasoning-backoff-turns=3": ("hybrid_reasoning_backoff_turns", 3),
    "--disable-hybrid-backend": ("disable_hybrid_backend", True),
}


def settings(kit, *, cli=None, env=None, yaml=None, tmp_path=None):
    path = write_config(tmp_path / "cfg", {"backends": yaml or {}})
    proxy = build_proxy(path, cli or {}, pm=kit.hybrid_pm(), env=env or {})
    return proxy.settings_for(HybridSettings)


def test_defaults_match_the_seed_docs(kit, tmp_path):
    assert settings(kit, tmp_path=tmp_path) == HybridSettings(
        disable_hybrid_backend=False, hybrid_backend_repeat_messages=False, reasoning_injection_probability=1.0,
        hybrid_reasoning_model_timeout=60, hybrid_reasoning_force_initial_turns=4,
        hybrid_execution_model_timeout=120, hybrid_reasoning_latency_threshold=8.0, hybrid_reasoning_backoff_turns=2,
    )


@pytest.mark.parametrize("flag", FLAGS)
def test_every_flag(kit, tmp_path, flag):
    field, expected = FLAGS[flag]
    args = vars(build_parser(kit.hybrid_pm()).parse_args([flag]))
    cli = {key: value for key, value in args.items() if value is not None and key != "config"}
    assert getattr(settings(kit, cli=cli, tmp_path=tmp_path), field) == expected


@pytest.mark.parametrize("field", list(HybridSettings.model_fields))
def test_every_env_var_and_yaml_key(kit, tmp_path, field):
    value = {"disable_hybrid_backend": "Yes", "hybrid_backend_repeat_messages": "on"}.get(field, "1")
    from_env = settings(kit, env={"HOOKPROXY_" + field.upper(): value}, tmp_path=tmp_path)
    from_yaml = settings(kit, yaml={field: value}, tmp_path=tmp_path)
    assert getattr(from_env, field) == getattr(from_yaml, field)
    assert getattr(from_env, field) in (True, 1, 1.0)


def test_cli_beats_env_beats_yaml(kit, tmp_path):
    env = {"HOOKPROXY_REASONING_INJECTION_PROBABILITY": "0.3"}
    yaml = {"reasoning_injection_probability": 0.2}
    assert settings(kit, env=env, yaml=yaml, tmp_path=tmp_path).reasoning_injection_probability == 0.3
    cli = {"reasoning_injection_probability": "0.4"}
    assert settings(kit, cli=cli, env=env, yaml=yaml, tmp_path=tmp_path).reasoning_injection_probability == 0.4


@pytest.mark.parametrize(("field", "value"), [
    ("reasoning_injection_probability", "1.5"), ("reasoning_injection_probability", "-0.1"),
    ("hybrid_reasoning_model_timeout", "0"), ("hybrid_execution_model_timeout", "0"),
    ("hybrid_reasoning_force_initial_turns", "-1"),
])
def test_out_of_range_values_are_start_up_errors_naming_the_key(kit, tmp_path, field, value):
    with pytest.raises(ConfigError, match=field):
        settings(kit, yaml={field: value}, tmp_path=tmp_path)
