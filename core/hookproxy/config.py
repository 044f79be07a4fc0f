"""Configuration: YAML file + backend-instance files + ``HOOKPROXY_*`` env + CLI flags.

Precedence is CLI > environment > YAML > defaults. Root YAML keys are validated and an
unknown one is an error naming the key and the file. ``${VAR}`` (or ``${VAR:-default}``) in
any YAML string is expanded from the environment; a missing variable without a default is a
start-up error. Backend-instance files live in ``backends/backend-instances/`` next to the
config file and are named ``<connector>.<name>.yaml``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from .backend import BackendInstance
from .errors import ConfigError
from .original_names import check_static_route

log = logging.getLogger("hookproxy.config")

ENV_PREFIX = "HOOKPROXY_"
INSTANCES_DIR = Path("backends") / "backend-instances"
DEFAULT_CONFIG = Path("config") / "config.yaml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ExtraModel = TypeVar("ExtraModel", bound=BaseModel)


class FailoverRoute(BaseModel):
    """A named failover route usable as a model name."""

    model_config = ConfigDict(extra="forbid")
    policy: Literal["ordered", "round-robin"] = "ordered"
    elements: list[str] = Field(min_length=1)


def _split_keys(value: Any) -> Any:
    """``HOOKPROXY_API_KEYS=a, b`` is a comma list; YAML gives a real list."""
    if isinstance(value, str):
        return [key.strip() for key in value.split(",") if key.strip()]
    return value


def _upper(value: Any) -> Any:
    """Log levels are accepted in any case (``debug``, ``Info``)."""
    return value.upper() if isinstance(value, str) else value


class Settings(BaseSettings):
    """Process-wide settings of the core. Field ``x`` is env ``HOOKPROXY_X`` and flag ``--x``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    default_backend: str | None = Field(
        None, description="backend (or selector `a:m1|b:m2`) for a model without a `backend:` prefix; "
        "unset, the one configured backend is the default")
    force_model: str | None = Field(None, description="replace every request's model with this `[backend:]model`")
    timeout: float = Field(120.0, gt=0, description="upstream timeout in seconds (per instance: `timeout:`)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="`DEBUG` `INFO` `WARNING` `ERROR` `CRITICAL`, any case")
    log_file: str | None = Field(None, description="also write the log to this file")
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="largest request body; larger gets 413")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="keys clients must send; none means auth is off (loopback only)")
    disable_auth: bool = Field(False, description="accept requests without a key (loopback only)")
    # failure handling; YAML block ``failure_handling:``
    max_silent_wait: float = Field(30.0, ge=0, description="longest `Retry-After` (s) waited out before failing over")
    total_timeout_budget: float = Field(90.0, gt=0, description="seconds for all retries and failover of a request")
    keepalive_interval: float = Field(8.0, gt=0, description="seconds between `: keepalive` comments while waiting")
    max_failover_hops: int = Field(5, ge=0, description="most backends tried after the first")
    min_retry_wait: float = Field(1.0, ge=0, description="shortest wait (s) before a retry")
    stream_idle_timeout: float = Field(240.0, gt=0, description="end a stream after this many seconds of silence")
    stream_max_lifetime: float = Field(900.0, gt=0, description="end any stream after this many seconds")
    shutdown_grace_period: float = Field(30.0, ge=0, description="on SIGTERM, seconds in-flight streams may finish")
    learn_cooldowns: bool = Field(True, description="after a 429/503/529 with `Retry-After`, call that backend for "
                                  "no request (on any worker or host sharing `state`) until then")
    failover_routes: dict[str, FailoverRoute] = Field(
        default_factory=dict, description="named routes usable as a model: "
        "`{policy: ordered|round-robin, elements: [backend:model, ...]}`")
    # upstream answers
    max_response_bytes: int = Field(64 * 1024 * 1024, gt=0, description=(
        "largest non-streamed upstream answer; larger is a 502 that fails over"))
    # the HTTP server's own limits (hostile or broken clients); YAML block ``server:``
    max_connections: int = Field(1000, gt=0, description=(
        "most open client connections; at the cap the one idle the longest is closed, with none idle 503"))
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="largest request line and headers; larger gets 431")
    max_header_count: int = Field(100, gt=0, description="most request headers; more gets 431")
    header_timeout: float = Field(15.0, gt=0, description=(
        "seconds to send the request head (408); a socket that sends nothing is closed"))
    body_timeout: float = Field(120.0, gt=0, description="seconds to send the whole request body (408)")
    keep_alive_timeout: float = Field(15.0, gt=0, description="seconds before an idle keep-alive connection is closed")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "addresses or networks (`10.0.0.0/8`) whose `X-Forwarded-For` is believed; none: the TCP peer counts"))
    max_throttled_clients: int = Field(10_000, gt=0, description="addresses the bad-key throttle remembers")
    # observability; YAML block ``observability:``
    metrics: bool = Field(True, description="serve `GET /metrics` (Prometheus text; needs the proxy key)")
    access_log: Literal["off", "text", "json"] = Field(
        "off", description="one line per request on standard error: `off`, `text` or `json` (JSON Lines)")
    #: Per-model default request fields, the lowest precedence (below the client's own fields).
    model_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per model, request fields used when the client sends none: "
        "`{model: {field: value}}`")
    # the proxy path's HTTP client
    upstream_client: Literal["native", "aiohttp"] = Field(
        "native", description="HTTP client for proxied requests: `native` (asyncio + httptools) or "
        "`aiohttp` (the fallback)")
    ca_bundle: str | None = Field(None, description="PEM file of extra CA certificates trusted for https upstreams")
    # scale-out: processes serving one port, and where they share state (none: each process alone)
    workers: int = Field(1, ge=1, description="worker processes serving the port")
    state: str | None = Field(None, description="`redis://[:password@]host:port/db` (or `rediss://`): share "
                              "cooldowns, throttles, round-robin and token refreshes between workers and hosts")

    _split_api_keys = field_validator("api_keys", "trusted_proxies", mode="before")(_split_keys)
    _upper_log_level = field_validator("log_level", mode="before")(_upper)

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        """Each trusted proxy is an address or a network (``10.0.0.0/8``); uvicorn reads them."""
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network") from exc
        return value

    @field_validator("model_defaults")
    @classmethod
    def _no_routing_fields(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Defaults are request parameters; the model, messages and stream flag are the client's."""
        for model, fields in value.items():
            for name in ("model", "messages", "stream"):
                if name in fields:
                    raise ValueError(f"{model}: {name!r} cannot have a default (it is the client's choice)")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"CA bundle {value} is not a file; give the path of a PEM file with the CA certificates")
        return value or None

    @property
    def auth_enabled(self) -> bool:
        return not self.disable_auth and bool(self.api_keys)


#: YAML sections whose keys are flattened onto Settings fields (``auth.api_keys`` -> api_keys).
SECTIONS: dict[str, tuple[str, ...]] = {
    "auth": ("api_keys", "disable_auth", "max_throttled_clients"),
    "server": ("max_connections", "max_header_bytes", "max_header_count", "header_timeout", "body_timeout",
               "keep_alive_timeout", "trusted_proxies"),
    "failure_handling": (
        "max_silent_wait",
        "total_timeout_budget",
        "keepalive_interval",
        "max_failover_hops",
        "min_retry_wait",
        "stream_idle_timeout",
        "stream_max_lifetime",
        "shutdown_grace_period",
        "learn_cooldowns",
    ),
    "observability": ("metrics", "access_log"),
}
#: Other spellings of root keys, accepted as the key they name (``proxy_timeout: 60`` is ``timeout: 60``).
YAML_ALIASES = {"proxy_timeout": "timeout"}
ROOT_KEYS = {"host", "port", "default_backend", "force_model", "timeout", "log_level", "log_file",
             "max_body_bytes", "max_response_bytes", "backends", "failover_routes", "model_defaults", "workers",
             "state", "upstream_client", "ca_bundle", *SECTIONS, *YAML_ALIASES}
CORE_BACKEND_SETTINGS = {"default_backend", "force_model"}
#: Settings fields given as JSON in the environment (``HOOKPROXY_FAILOVER_ROUTES='{...}'``).
JSON_ENV_FIELDS = ("failover_routes", "model_defaults")


class _InstanceConfig(BaseModel):
    """The envelope of a backend block or instance file; ``extra`` belongs to the plugin."""

    model_config = ConfigDict(extra="forbid")
    connector: str | None = None
    type: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    models: list[str] = Field(default_factory=list)
    timeout: float | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("max_output_tokens", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        # YAML's `true` would otherwise pass as the integer 1 and cap every answer at one token.
        if isinstance(value, bool):
            raise ValueError("must be a whole number of tokens, not true/false")
        return value


@dataclass
class LoadedConfig:
    """Everything read from disk and environment, validated."""

    settings: Settings
    instances: list[BackendInstance]
    plugin_values: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: The start-up line naming the original proxy's environment variables in use, if any.
    original_env_line: str | None = None


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


def _flatten_root(
    data: Mapping[str, Any], path: Path, moved: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a root mapping into Settings values and the raw ``backends:`` mapping."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if moved and key in moved:
            raise ConfigError(f"{path}: {key!r} is not a top-level key here; it lives under {moved[key]}")
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
        elif key in YAML_ALIASES:
            values[YAML_ALIASES[key]] = value
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
        if name in JSON_ENV_FIELDS:
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

    cli_values = {key: value for key, value in cli.items() if value is not None}
    try:
        return _Bound(**cli_values)
    except ValidationError as exc:
        raise ConfigError(_describe_setting(exc, cli_values, env_values, where)) from exc


def yaml_key(name: str) -> str:
    """Where a Settings field lives in the YAML file (``failure_handling.max_silent_wait``)."""
    for section, names in SECTIONS.items():
        if name in names:
            return f"{section}.{name}"
    return name


def _describe_setting(
    exc: ValidationError, cli: Mapping[str, Any], env_values: Mapping[str, Any], where: str
) -> str:
    """Name the source that gave the bad value: the flag, the env var, or the file and key."""
    first = exc.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    rest = ".".join(str(part) for part in first["loc"][1:])
    detail = f"{first['msg']} (got {first.get('input')!r})"
    if name in cli:
        return f"--{name.replace('_', '-')}: {detail}; fix the flag"
    if name in env_values:
        return f"environment variable {ENV_PREFIX}{name.upper()}: {detail}; fix or unset it"
    key = ".".join(part for part in (yaml_key(name), rest) if part)
    return f"{where}: {key}: {detail}"


def _describe(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "value"
    return f"{where}: {key}: {first['msg']} (got {first.get('input')!r})"


# --- backend instances ---------------------------------------------------------------------


def env_names(raw: Any) -> tuple[str, ...]:
    """The ``${VAR}`` names a raw (not yet expanded) YAML string refers to."""
    return tuple(match.group(1) for match in _VAR.finditer(raw)) if isinstance(raw, str) else ()


def _instance(
    instance_id: str, body: Any, source: Path, default_connector: str | None, raw: Any = None
) -> BackendInstance:
    if not isinstance(body, dict):
        raise ConfigError(f"{source}: backend {instance_id!r} must be a mapping")
    if "credentials_path" in body and isinstance(body.get("extra", {}), dict):
        # The original's place for it, next to api_key; plugins read it from extra (theirs wins).
        body = dict(body)
        body["extra"] = {"credentials_path": body.pop("credentials_path"), **(body.get("extra") or {})}
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
        max_output_tokens=parsed.max_output_tokens,
        extra=parsed.extra,
        source=source,
        api_key_env=env_names(raw.get("api_key")) if isinstance(raw, dict) else (),
    )


def load_instance_files(directory: Path, env: Mapping[str, str]) -> list[BackendInstance]:
    """Read ``<connector>.<name>.yaml`` files; a non-mapping file is skipped with a warning."""
    instances: list[BackendInstance] = []
    if not directory.is_dir():
        return instances
    for path in sorted(directory.glob("*.y*ml")):
        stem = path.name.rsplit(".", 1)[0]
        connector, dot, name = stem.partition(".")
        if not dot or not name:
            log.warning("skipping %s: instance files are named <connector>.<name>.yaml", path)
            continue
        raw = read_yaml(path)
        if not isinstance(raw, dict):
            log.warning("skipping %s: its top level is not a mapping", path)
            continue
        data = expand_env(raw, where=str(path), env=env)
        instances.append(_instance(stem, data, path, connector, raw))
    return instances


def load_config(
    path: Path | None,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    moved_keys: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Read the config file (if any) and its instance files; build the core Settings.

    ``moved_keys`` maps top-level keys the original proxy accepted to where they live now
    (plugin settings under ``backends:``), so such a key gets an error saying so.
    """
    env = os.environ if env is None else env
    cli = cli or {}
    yaml_values: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    raw_backends: Any = None
    instances: list[BackendInstance] = []
    if path is not None:
        data = read_yaml(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of settings")
        raw_backends = data.get("backends")
        data = expand_env(data, where=str(path), env=env)
        yaml_values, backends = _flatten_root(data, path, moved_keys)
    plugin_values: dict[str, Any] = {}
    raw_backends = raw_backends if isinstance(raw_backends, dict) else {}
    for key, value in backends.items():
        if isinstance(value, dict):
            instances.append(_instance(key, value, path or Path("<config>"), None, raw_backends.get(key)))
        elif key in CORE_BACKEND_SETTINGS:
            yaml_values.setdefault(key, value)
        elif key == "static_route":  # the original's name: a strict BACKEND:MODEL force_model
            yaml_values.setdefault("force_model", check_static_route(str(value), f"{path}: backends.static_route"))
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


def validate_extra(model: type[ExtraModel], instance: BackendInstance) -> ExtraModel:
    """Validate an instance's ``extra:`` block with a connector's model; errors name file and key."""
    try:
        return model.model_validate(dict(instance.extra))
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"{instance.where()}: extra.{key}: {problem['msg']}") from exc


# --- plugin settings ---------------------------------------------------------------------------


def build_plugin_settings(
    model: type[BaseModel],
    yaml_values: Mapping[str, Any],
    cli: Mapping[str, Any],
    env: Mapping[str, str],
    where: str,
    yaml_where: str | None = None,
    env_labels: Mapping[str, str] | None = None,
) -> BaseModel:
    """Validate one plugin's settings model from YAML ``backends:`` keys, env and CLI.

    A bad value is blamed on where it came from: the flag, the variable or the YAML key.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in model.model_fields:
        if name in yaml_values:
            values[name] = yaml_values[name]
            origins[name] = f"{yaml_where or where}.{name}"
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = env[env_name]
            origins[name] = f"environment variable {(env_labels or {}).get(env_name, env_name)}"
        if cli.get(name) is not None:
            values[name] = cli[name]
            origins[name] = "--" + name.replace("_", "-")
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        origin = origins.get(str(first["loc"][0])) if first["loc"] else None
        if origin is None:
            raise ConfigError(_describe(exc, where)) from exc
        raise ConfigError(f"{origin}: {first['msg']} (got {first.get('input')!r})") from exc
