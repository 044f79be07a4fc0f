"""What users can configure: the process-wide gate flag and the instance's ``extra:`` block.

Kept apart from the behaviour so the README's settings table and this file can be read side by
side. Every ``extra`` key has a default, so the synthesized ``qwen-oauth.default`` instance (no
file at all) resolves; unknown keys are refused so a typo does not silently do nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hookproxy import BackendInstance, ConfigError

CONNECTOR = "qwen-oauth"
GATE_KEY = "enable_qwen_oauth_backend_debugging_override"
GATE_FLAG = "--enable-qwen-oauth-backend-debugging-override"
DEFAULT_TOKEN_URL = "https://chat.qwen.ai/api/v1/oauth2/token"
DEFAULT_API_BASE = "https://portal.qwen.ai/v1"
DEFAULT_MODELS = ("coder-model", "vision-model", "qwen3-coder-plus", "qwen3-coder-flash")


class QwenOAuthSettings(BaseModel):
    """Process-wide settings: the core turns the field into the CLI flag, env var and YAML key."""

    enable_qwen_oauth_backend_debugging_override: bool = Field(
        False,
        description="open the qwen-oauth gate (you accept the disclaimer in the qwen-oauth plugin README)",
    )


class QwenOAuthExtra(BaseModel):
    """The ``extra:`` block of a qwen-oauth instance (see the README's settings table)."""

    model_config = ConfigDict(extra="forbid")

    enable_qwen_oauth_backend_debugging_override: bool = False
    enable_qwen_oauth_initial_rate_limit_retry: bool = True
    qwen_oauth_initial_rate_limit_retry_max_wait_seconds: float = Field(10.0, ge=0)
    qwen_oauth_initial_rate_limit_retry_random_min_seconds: float = Field(3.0, ge=0)
    qwen_oauth_initial_rate_limit_retry_random_max_seconds: float = Field(10.0, ge=0)
    credentials_path: str | None = None
    token_url: str = DEFAULT_TOKEN_URL
    api_base: str | None = None
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    user_agent: str | None = None
    dashscope_cache_control: str = "enable"
    dashscope_auth_type: str = "qwen-oauth"
    headers: dict[str, str] = Field(default_factory=dict)
    refresh_timeout_seconds: float = Field(30.0, gt=0)
    #: Qwen's soft switch: append " /think" to the last user/system message unless effort is low.
    enable_qwen_think_soft_switch: bool = False

    @field_validator("token_url", "api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _no_empty_models(self) -> QwenOAuthExtra:
        if any(not name for name in self.models):
            raise ValueError("models: names must be non-empty strings")
        return self


def parse_extra(instance: BackendInstance) -> QwenOAuthExtra:
    """Validate ``instance.extra``; a bad key or type is a ConfigError naming the file and the key."""
    try:
        return QwenOAuthExtra.model_validate(dict(instance.extra))
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = ".".join(str(part) for part in problem["loc"]) or "extra"
        raise ConfigError(f"{instance.where()}: extra.{key}: {problem['msg']}") from exc
