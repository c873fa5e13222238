"""Configuration: flag > environment > config file > default, for every setting.

The config file is TOML: `TETHER_CONFIG` names it, else `tether.toml` in the working
directory is read when present. Keys are the setting names below (`database_url`, ...);
environment variables are the same names upper-cased with a `TETHER_` prefix.
"""

from __future__ import annotations

import getpass
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tether.errors import ConfigError

DEFAULT_SQLITE_FILE = "tether.db"

MIN_SECRET_BYTES = 32
"""Shortest secret accepted (`jwt_secret`, `metrics_token`): HS256 wants a key as long as
its 256-bit hash, and a short one can be guessed offline from any token it signed."""


def check_secret(name: str, value: str) -> None:
    """Raise `ValueError` (saying how to make a good one, never echoing it) when a
    non-empty secret is shorter than `MIN_SECRET_BYTES` bytes of UTF-8."""
    size = len(value.encode())
    if 0 < size < MIN_SECRET_BYTES:
        raise ValueError(
            f"{name} is {size} bytes; it must be at least {MIN_SECRET_BYTES} bytes "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


class Settings(BaseModel):
    """Every setting Tether reads. See the README's configuration table."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_FILE}",
        description="sqlite:///path or postgresql://user@host/db",
    )
    app: str | None = Field(default=None, description="pkg.module:attr of the Tether app")
    tenant: str = Field(default="default", description="Tenant of CLI and in-process work")
    identity: str | None = Field(
        default=None,
        min_length=1,
        description="Who CLI and in-process submissions are by (created_by); "
        "default: the OS login name",
    )
    idempotency_ttl: float = Field(
        default=86400.0, gt=0, description="Seconds an idempotency key is remembered"
    )
    concurrency: int = Field(default=100, ge=1, description="Tasks in flight per worker")
    fair_claims: bool = Field(
        default=True,
        description="Claims serve fairness keys (tenants) in turn; off: first come, first "
        "served within priority",
    )
    fair_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Weight per fairness key (tenant), default 1: a key of weight 2 gets "
        "two turns to one ([tether.fair_weights]; JSON in the environment)",
    )
    queues: str = Field(default="default", description="Comma-separated queues a worker serves")
    lease_ttl: float = Field(default=30.0, gt=0, description="Seconds a claim lasts unrenewed")
    poll_interval: float = Field(default=0.5, gt=0, description="Fallback poll, seconds")
    shutdown_grace: float = Field(default=10.0, ge=0, description="SIGTERM grace, seconds")
    max_lease_expiries: int = Field(
        default=3,
        ge=0,
        description="Times in a row a task's worker may be lost (lease expired, no step "
        "recorded since) before the task fails with WorkerLost (0: no limit)",
    )
    retention_days: float = Field(default=30.0, gt=0, description="Keep ended tasks this long")
    dlq_retention_days: float = Field(
        default=365.0,
        gt=0,
        description="Keep a dead-letter group and its audit trail this long after its last "
        "failure or action, once it has no open members",
    )
    gc_threshold: int = Field(
        default=10_000,
        ge=0,
        description="First-generation GC threshold while a worker runs (0: leave the GC alone)",
    )
    # HTTP API (tether.api) ---------------------------------------------------------------
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 secret that signs API bearer tokens"
    )
    jwks_url: str | None = Field(default=None, description="JWKS URL for RS256 bearer tokens")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the deployment-wide /metrics (every tenant's figures)",
    )
    max_body_bytes: int = Field(default=1 << 20, ge=1, description="API request body cap")
    submit_rate: float = Field(
        default=100.0, ge=0, description="Task submissions per second per tenant (0: no limit)"
    )
    submit_burst: float = Field(default=200.0, ge=1, description="Submission burst per tenant")
    # Flow control (tether.flow) ------------------------------------------------------------
    rate_limits: dict[str, Any] | None = Field(
        default=None,
        description="Rate limits by integration ([tether.rate_limits.NAME]; JSON in the "
        "environment); see docs/flow-control.md",
    )
    dev: bool = Field(default=False, description="Dev mode: API with a generated local secret")
    api_telemetry: bool = Field(
        default=False,
        description="FastAPI's OpenTelemetry spans and metrics for API requests (needs a "
        "configured OpenTelemetry provider; off: not even the check, ADR 80)",
    )
    # The CLI driving a server (tether.cli) -------------------------------------------------
    server: str | None = Field(
        default=None, description="URL of a Tether server the CLI drives over HTTP"
    )
    token: SecretStr | None = Field(default=None, description="Bearer token for `server`")
    api_key: SecretStr | None = Field(default=None, description="API key for `server`")
    # Approvals (tether.engine.approvals) -------------------------------------------------
    approval_policy: dict[str, Any] | None = Field(
        default=None,
        description="Risk policy table ([tether.approval_policy]; JSON in the environment); "
        "see docs/approvals.md",
    )

    # Budgets (tether.flow) -------------------------------------------------------------
    budgets: dict[str, Any] | None = Field(
        default=None,
        description="Spend limits per tenant per day, per workflow ([tether.budgets]; JSON "
        "in the environment); see docs/flow-control.md",
    )

    # Notifications (tether.notify) -------------------------------------------------------
    console_url: str | None = Field(
        default=None,
        description="Base URL of the console, for links in notifications "
        "({console_url}/approvals/{id}, {console_url}/tasks/{id})",
    )
    notifications: dict[str, Any] | None = Field(
        default=None,
        description="Channels and routes ([tether.notifications]; JSON in the environment); "
        "see docs/notifications.md",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for email channels")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port")
    smtp_starttls: bool = Field(default=True, description="Upgrade SMTP with STARTTLS")
    smtp_username: str | None = Field(default=None, description="SMTP login (none: no login)")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password")
    smtp_from: str | None = Field(default=None, description="From address of notifications")
    smtp_timeout: float = Field(default=10.0, gt=0, description="SMTP timeout, seconds")
    # Inbound webhooks (tether.hooks) ----------------------------------------------------
    hooks: dict[str, Any] | None = Field(
        default=None,
        description="Inbound signed webhooks by name ([tether.hooks.NAME]; JSON in the "
        "environment); see docs/api.md",
    )
    hook_dedup_ttl: float = Field(
        default=7 * 86400.0, gt=0, description="Seconds an inbound webhook-id is remembered"
    )
    hook_max_body_bytes: int = Field(
        default=256 * 1024, ge=1, description="Inbound webhook body cap (larger: 413)"
    )

    # Egress (tether.egress): every outbound request, webhooks first ----------------------
    model_prices: dict[str, Any] | None = Field(
        default=None,
        description="Model prices, dollars per million tokens, over the built-in table "
        "([tether.model_prices]; JSON in the environment)",
    )
    egress_allow: list[str] = Field(
        default_factory=list,
        description="Hosts, IPs and networks outbound HTTP may reach despite the SSRF guard "
        "(http, private addresses); comma-separated in the environment",
    )
    egress_timeout: float = Field(
        default=10.0, gt=0, description="Seconds per phase of one outbound request"
    )
    egress_max_response_bytes: int = Field(
        default=1 << 20, ge=1, description="Largest outbound response body read"
    )

    # Webhooks (tether.webhooks) -------------------------------------------------------
    webhooks: bool = Field(
        default=True, description="Run the webhook dispatcher in workers and servers"
    )
    webhook_concurrency: int = Field(
        default=64, ge=1, description="Webhook deliveries in flight per dispatcher"
    )
    webhook_max_attempts: int = Field(
        default=15, ge=1, description="Attempts per delivery before it fails for good"
    )
    webhook_retry_initial: float = Field(
        default=10.0, gt=0, description="Seconds before a delivery's second attempt"
    )
    webhook_retry_max_interval: float = Field(
        default=3600.0, gt=0, description="Longest wait between two attempts, seconds"
    )
    webhook_disable_after: int = Field(
        default=5,
        ge=1,
        description="Deliveries in a row failed for good that disable a subscription",
    )
    webhook_lease_ttl: float = Field(
        default=60.0, gt=0, description="Seconds a dispatcher holds a delivery it claimed"
    )
    webhook_poll_interval: float = Field(
        default=1.0, gt=0, description="Webhook fan-out and claim fallback poll, seconds"
    )
    webhook_secret_overlap: float = Field(
        default=86400.0, ge=0, description="Seconds the old secret still signs after rotation"
    )

    # Flow control (tether.flow) ----------------------------------------------------------
    breakers: dict[str, Any] | None = Field(
        default=None,
        description="Circuit breakers by integration ([tether.breakers.NAME]: failures, "
        "failure_rate, window, min_calls, cool_down, probes, per_tenant; JSON in the "
        "environment); see docs/flow-control.md",
    )
    step_limits: dict[str, Any] | None = Field(
        default=None,
        description="Running steps at most per integration, fleet-wide ([tether.step_limits]: "
        "crm = 5; JSON in the environment); see docs/flow-control.md",
    )

    # Schedules (tether.schedules) -------------------------------------------------------
    schedules: bool = Field(
        default=True, description="Run a scheduler (cron schedules) in workers and servers"
    )
    schedule_poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between a scheduler's looks at the schedules at most (it "
        "sleeps until the next tick it knows of; other processes' new schedules are seen "
        "within this)",
    )

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _allow_list(cls, value: Any) -> Any:
        # From the environment the list arrives as "a,b" or as a JSON list.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("jwt_secret", "metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            check_secret(info.field_name or "secret", value.get_secret_value())
        return value

    @field_validator("server")
    @classmethod
    def _server_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("fair_weights")
    @classmethod
    def _positive_weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, w in value.items() if not w > 0 or w == float("inf"))
        if bad:
            raise ValueError(f"a fairness weight is a positive number: see {', '.join(bad)}")
        return value

    @field_validator(
        "approval_policy",
        "notifications",
        "hooks",
        "model_prices",
        "fair_weights",
        "rate_limits",
        "breakers",
        "step_limits",
        "budgets",
        mode="before",
    )
    @classmethod
    def _policy_json(cls, value: Any) -> Any:
        # From the environment the table arrives as a JSON string.
        return json.loads(value) if isinstance(value, str) else value

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]


LOCAL_IDENTITY = "local"
"""The identity of in-process work when the OS cannot name its user."""


def local_identity() -> str:
    """The login name, looked up as the CLI looks up its default reviewer ($USER, else
    $USERNAME, else what the OS says), else `LOCAL_IDENTITY`: who in-process
    submissions are by when nothing else says."""
    name = os.environ.get("USER") or os.environ.get("USERNAME")
    if name:
        return name
    try:
        return getpass.getuser() or LOCAL_IDENTITY
    except (OSError, KeyError):
        return LOCAL_IDENTITY


def secret_from(table: Mapping[str, Any], key: str, where: str) -> SecretStr:
    """The secret `key` of a table, given as `key = "..."` or `key_env = "VARIABLE"`
    (read from the environment, so the file need not hold it)."""
    if key in table and f"{key}_env" in table:
        raise ConfigError(f"{where}: give {key} or {key}_env, not both")
    if f"{key}_env" in table:
        variable = str(table[f"{key}_env"])
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"{where}.{key}_env: the environment variable {variable} is unset")
        return SecretStr(value)
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key} (or {key}_env) is required")
    return SecretStr(value)


def _file_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        env_path = os.environ.get("TETHER_CONFIG")
        if env_path:
            path = Path(env_path)
            if not path.is_file():
                raise ConfigError(f"TETHER_CONFIG names a missing file: {path}")
        else:
            path = Path("tether.toml")
            if not path.is_file():
                return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    section = data.get("tether", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: expected a [tether] table")
    return section


def load_settings(flags: dict[str, Any] | None = None, path: Path | None = None) -> Settings:
    """Settings from flags (None values ignored), environment, file and defaults."""
    values: dict[str, Any] = dict(_file_values(path))
    for name in Settings.model_fields:
        env = os.environ.get(f"TETHER_{name.upper()}")
        if env is not None and env != "":
            values[name] = env
    for name, value in (flags or {}).items():
        if value is not None:
            values[name] = value
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
