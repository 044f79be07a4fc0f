"""Configuration: YAML file + backend-instance files + ``HOOKPROXY_*`` env + CLI flags.

Precedence is CLI > environment > YAML > defaults (C-7). Root YAML keys are validated and an
unknown one is an error naming the key and the file. ``${VAR}`` (or ``${VAR:-default}``) in
any YAML string is expanded from the environment; a missing variable without a default is a
start-up error. Backend-instance files live in ``backends/backend-instances/`` next to the
config file and are named ``<connector>.<name>.yaml`` (C-9).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from .backend import BackendInstance
from .errors import ConfigError

log = logging.getLogger("hookproxy.config")

ENV_PREFIX = "HOOKPROXY_"
INSTANCES_DIR = Path("backends") / "backend-instances"
DEFAULT_CONFIG = Path("config") / "config.yaml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class FailoverRoute(BaseModel):
    """A named failover route usable as a model name (F-5)."""

    model_config = ConfigDict(extra="forbid")
    policy: Literal["ordered", "round-robin"] = "ordered"
    elements: list[str] = Field(min_length=1)


def _split_keys(value: Any) -> Any:
    """``HOOKPROXY_API_KEYS=a, b`` is a comma list; YAML gives a real list."""
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    return value


class Settings(BaseSettings):
    """Process-wide settings of the core. Field ``x`` is env ``HOOKPROXY_X`` and flag ``--x``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    default_backend: str | None = None
    force_model: str | None = None
    timeout: float = Field(120.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    disable_auth: bool = False
    # failure handling (F-1); YAML block ``failure_handling:``
    max_silent_wait: float = Field(30.0, ge=0)
    total_timeout_budget: float = Field(90.0, gt=0)
    keepalive_interval: float = Field(8.0, gt=0)
    max_failover_hops: int = Field(5, ge=0)
    min_retry_wait: float = Field(1.0, ge=0)
    stream_idle_timeout: float = Field(240.0, gt=0)
    stream_max_lifetime: float = Field(900.0, gt=0)
    shutdown_grace_period: float = Field(30.0, ge=0)
    failover_routes: dict[str, FailoverRoute] = Field(default_factory=dict)
    # scale-out: processes serving one port, and where they share state (None: in each process)
    workers: int = Field(1, ge=1)
    state: str | None = None

    _split_api_keys = field_validator("api_keys", mode="before")(_split_keys)

    @property
    def auth_enabled(self) -> bool:
        return not self.disable_auth and bool(self.api_keys)


#: YAML sections whose keys are flattened onto Settings fields (``auth.api_keys`` -> api_keys).
SECTIONS: dict[str, tuple[str, ...]] = {
    "auth": ("api_keys", "disable_auth"),
    "failure_handling": (
        "max_silent_wait",
        "total_timeout_budget",
        "keepalive_interval",
        "max_failover_hops",
        "min_retry_wait",
        "stream_idle_timeout",
        "stream_max_lifetime",
        "shutdown_grace_period",
    ),
}
ROOT_KEYS = {"host", "port", "default_backend", "force_model", "timeout", "proxy_timeout", "log_level",
             "max_body_bytes", "backends", "failover_routes", "workers", "state", *SECTIONS}
CORE_BACKEND_SETTINGS = {"default_backend", "force_model"}


class _InstanceConfig(BaseModel):
    """The envelope of a backend block or instance file; ``extra`` belongs to the plugin."""

    model_config = ConfigDict(extra="forbid")
    connector: str | None = None
    type: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    models: list[str] = Field(default_factory=list)
    timeout: float | None = Field(None, gt=0)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


@dataclass
class LoadedConfig:
    """Everything read from disk and environment, validated."""

    settings: Settings
    instances: list[BackendInstance]
    plugin_values: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# --- ${VAR} expansion ---------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, *, where: str, env: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string of a YAML tree."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where} uses ${{{name}}}, which is not set; export {name}=... "
                f"(or write ${{{name}:-}} to allow it to be empty)"
            )

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {key: expand_env(item, where=f"{where}.{key}", env=env) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, where=f"{where}[{index}]", env=env) for index, item in enumerate(value)]
    return value


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}; check the --config path") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{at}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from exc


# --- the root file ---------------------------------------------------------------------------


def _flatten_root(data: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a root mapping into Settings values and the raw ``backends:`` mapping."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in ROOT_KEYS:
            known = ", ".join(sorted(ROOT_KEYS))
            raise ConfigError(f"{path}: unknown key {key!r} at the top level; known keys: {known}")
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key} must be a mapping")
            for sub, item in value.items():
                if sub not in SECTIONS[key]:
                    raise ConfigError(f"{path}: unknown key {key}.{sub}; known: {', '.join(SECTIONS[key])}")
                values[sub] = item
        elif key == "proxy_timeout":
            values["timeout"] = value
        elif key != "backends":
            values[key] = value
    backends = data.get("backends") or {}
    if not isinstance(backends, dict):
        raise ConfigError(f"{path}: backends must be a mapping of backend names to blocks")
    return values, backends


class _Source(PydanticBaseSettingsSource):
    """Feeds already-read values (environment, YAML) to pydantic-settings in precedence order."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    """``HOOKPROXY_<FIELD>`` values from ``env`` (JSON for mappings such as failover_routes)."""
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if name == "failover_routes":
            try:
                values[name] = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be JSON: {exc}") from exc
        else:
            values[name] = raw
    return values


def build_settings(
    yaml_values: dict[str, Any], cli: Mapping[str, Any], where: str, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings with CLI > env > YAML > defaults; errors name the key and where it came from."""
    env_values = _env_values(os.environ if env is None else env)

    class _Bound(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return init_settings, _Source(settings_cls, env_values), _Source(settings_cls, yaml_values)

    try:
        return _Bound(**{key: value for key, value in cli.items() if value is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from exc


def _describe(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {key}: {first['msg']} (got {first.get('input')!r})"


# --- backend instances ---------------------------------------------------------------------


def _instance(instance_id: str, body: Any, source: Path, default_connector: str | None) -> BackendInstance:
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: backend {instance_id!r} must be a mapping")
    try:
        parsed = _InstanceConfig.model_validate(body)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{source}: backend {instance_id!r}")) from exc
    connector = default_connector or parsed.connector or parsed.type
    if not connector:
        raise ConfigError(f"{source}: backend {instance_id!r} needs a 'connector:' (e.g. openai-compatible)")
    return BackendInstance(
        id=instance_id,
        connector=connector,
        api_url=parsed.api_url,
        api_key=parsed.api_key,
        models=tuple(parsed.models),
        timeout=parsed.timeout,
        extra=parsed.extra,
        source=source,
    )


def load_instance_files(directory: Path, env: Mapping[str, str]) -> list[BackendInstance]:
    """Read ``<connector>.<name>.yaml`` files (C-9); a non-mapping file is skipped with a warning."""
    instances: list[BackendInstance] = []
    if not directory.is_dir():
        return instances
    for path in sorted(directory.glob("*.y*ml")):
        stem = path.name.rsplit(".", 1)[0]
        connector, dot, name = stem.partition(".")
        if not dot or not name:
            log.warning("skipping %s: instance files are named <connector>.<name>.yaml", path)
            continue
        data = read_yaml(path)
        if not isinstance(data, dict):
            log.warning("skipping %s: its top level is not a mapping", path)
            continue
        data = expand_env(data, where=str(path), env=env)
        instances.append(_instance(stem, data, path, connector))
    return instances


def load_config(
    path: Path | None,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read the config file (if any) and its instance files; build the core Settings."""
    env = os.environ if env is None else env
    cli = cli or {}
    yaml_values: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    instances: list[BackendInstance] = []
    if path is not None:
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        data = expand_env(data, where=str(path), env=env)
        yaml_values, backends = _flatten_root(data, path)
    plugin_values: dict[str, Any] = {}
    for key, value in backends.items():
        if isinstance(value, dict):
            instances.append(_instance(key, value, path or Path("<config>"), None))
        elif key in CORE_BACKEND_SETTINGS:
            yaml_values.setdefault(key, value)
        else:
            plugin_values[key] = value
    if path is not None:
        instances.extend(load_instance_files(path.parent / INSTANCES_DIR, env))
    _check_unique(instances)
    settings = build_settings(yaml_values, cli, str(path) if path else "settings", env)
    return LoadedConfig(settings=settings, instances=instances, plugin_values=plugin_values, path=path)


def _check_unique(instances: list[BackendInstance]) -> None:
    seen: dict[str, BackendInstance] = {}
    for instance in instances:
        if instance.id in seen:
            raise ConfigError(
                f"backend {instance.id!r} is defined twice ({seen[instance.id].source} and {instance.source}); "
                "rename one"
            )
        seen[instance.id] = instance


def default_config_path(explicit: str | None) -> Path | None:
    """``--config`` if given (it must exist), else ``config/config.yaml`` when present."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass --config with an existing file")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


# --- plugin settings ---------------------------------------------------------------------------


def build_plugin_settings(
    model: type[BaseModel],
    yaml_values: Mapping[str, Any],
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    where: str,
) -> BaseModel:
    """Validate one plugin's settings model from YAML ``backends:`` keys, env and CLI."""
    values: dict[str, Any] = {}
    for name in model.model_fields:
        if name in yaml_values:
            values[name] = yaml_values[name]
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = env[env_name]
        if cli.get(name) is not None:
            values[name] = cli[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where)) from exc
