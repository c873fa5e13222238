"""Inbound signed webhooks (agent to agent): named hooks, each with its own secret,
that start a workflow or signal a task when a signed delivery arrives at
`POST /v1/hooks/{name}`. Declared in `[tether.hooks.NAME]` or with `app.hook(...)`.

A hook maps the verified JSON body to what it does: the workflow's input (the whole
body, a dotted path into it, or a function), or the task and payload of a signal (the
task id from a dotted path, a header, or a function). Mapping failures are the sender's
mistake (`HookMappingError`, answered 422), never a half-done action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack, cast

from pydantic import SecretStr
from standardwebhooks import Webhook

from tether.config import secret_from
from tether.errors import ConfigError, TetherError

BodyMap = Callable[[Any], Any]
"""From the verified JSON body to a value (a workflow input, a signal payload)."""
TaskIdMap = Callable[[Any, Mapping[str, str]], Any]
"""From the body and the request headers (lower-case names) to a task id."""


class HookMappingError(TetherError):
    """A verified delivery does not carry what its hook's mapping needs."""


def path_getter(path: str) -> BodyMap:
    """A function reading `a.b.c` from nested objects (`""` or `"."`: the whole body)."""
    parts = [p for p in path.split(".") if p]

    def get(body: Any) -> Any:
        value = body
        for i, part in enumerate(parts):
            if not isinstance(value, Mapping) or part not in value:
                where = ".".join(parts[: i + 1])
                raise HookMappingError(f"the body has no field {where!r}")
            value = value[part]
        return value

    return get


def _body_map(value: str | BodyMap | None) -> BodyMap | None:
    return path_getter(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class HookDef:
    """One inbound hook: who may call it (whoever holds `secret`), for which tenant,
    and what a delivery does: start `workflow` or send `signal` to a task."""

    name: str
    secret: SecretStr
    """The Standard Webhooks secret (`whsec_` + base64) shared with the sender."""
    tenant: str | None = None
    """Tenant of the tasks it starts or signals (None: the `tenant` setting)."""
    workflow: str | None = None
    input: BodyMap | None = None
    """The workflow's input from the body (None: the whole body)."""
    signal: str | None = None
    task_id: TaskIdMap | None = None
    """The task to signal, from the body and headers."""
    payload: BodyMap | None = None
    """The signal's payload from the body (None: the whole body)."""
    verifier: Webhook = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.workflow is None) == (self.signal is None):
            raise ConfigError(f"hook {self.name!r}: give a workflow to start or a signal")
        if self.signal is not None and self.task_id is None:
            raise ConfigError(f"hook {self.name!r}: a signal hook needs task_id or task_header")
        try:
            verifier = Webhook(self.secret.get_secret_value())
        except Exception as exc:  # bad base64 (binascii.Error), an empty secret
            raise ConfigError(f"hook {self.name!r}: the secret is not a whsec_ secret") from exc
        object.__setattr__(self, "verifier", verifier)

    def __repr__(self) -> str:
        action = f"workflow={self.workflow!r}" if self.workflow else f"signal={self.signal!r}"
        return f"HookDef({self.name!r}, {action}, tenant={self.tenant!r})"

    def start_input(self, body: Any) -> Any:
        """The input of the task a workflow hook's delivery starts."""
        return body if self.input is None else _mapped(self.input, body)

    def signal_payload(self, body: Any) -> Any:
        """The payload of the signal a signal hook's delivery sends."""
        return body if self.payload is None else _mapped(self.payload, body)

    def target_task(self, body: Any, headers: Mapping[str, str]) -> str:
        """The id of the task a signal hook's delivery is for."""
        assert self.task_id is not None
        value = _mapped(self.task_id, body, headers)
        if not isinstance(value, str) or not value:
            raise HookMappingError("the delivery names no task id")
        return value


def _mapped(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a mapping: a body it cannot map (a missing key, a wrong type) is the sender's
    mistake, answered 422, not a server error."""
    try:
        return fn(*args)
    except HookMappingError:
        raise
    except Exception as exc:
        raise HookMappingError(
            f"the body does not fit the hook's mapping ({type(exc).__name__}: {exc})"
        ) from None


class HookOptions(TypedDict, total=False):
    """What a hook does, in the forms `make_hook` and `Tether.hook` accept."""

    tenant: str | None
    workflow: str | None
    input: str | BodyMap | None
    signal: str | None
    task_id: str | TaskIdMap | None
    task_header: str | None
    payload: str | BodyMap | None


def make_hook(name: str, *, secret: str | SecretStr, **options: Unpack[HookOptions]) -> HookDef:
    """A `HookDef` from the friendlier forms: dotted paths for `input`, `task_id` and
    `payload`, or a header name (`task_header`) for the task id."""
    task_id, task_header = options.get("task_id"), options.get("task_header")
    if task_id is not None and task_header is not None:
        raise ConfigError(f"hook {name!r}: give task_id or task_header, not both")
    task_map: TaskIdMap | None
    if isinstance(task_id, str):
        getter = path_getter(task_id)
        task_map = lambda body, _headers: getter(body)  # noqa: E731
    elif task_header is not None:
        header = task_header.lower()

        def from_header(_body: Any, headers: Mapping[str, str]) -> Any:
            if header not in headers:
                raise HookMappingError(f"the {task_header} header is missing")
            return headers[header]

        task_map = from_header
    else:
        task_map = task_id
    return HookDef(
        name=name,
        secret=secret if isinstance(secret, SecretStr) else SecretStr(secret),
        tenant=options.get("tenant"),
        workflow=options.get("workflow"),
        input=_body_map(options.get("input")),
        signal=options.get("signal"),
        task_id=task_map,
        payload=_body_map(options.get("payload")),
    )


HOOK_KEYS = {
    "secret",
    "secret_env",
    "tenant",
    "workflow",
    "input",
    "signal",
    "task_id",
    "task_header",
    "payload",
}


@dataclass
class HookBook:
    """The inbound hooks by name."""

    hooks: dict[str, HookDef] = field(default_factory=dict)

    def add(self, hook: HookDef) -> HookDef:
        self.hooks[hook.name] = hook
        return hook

    def get(self, name: str) -> HookDef | None:
        return self.hooks.get(name)

    @classmethod
    def from_config(cls, table: Mapping[str, Any] | None) -> HookBook:
        """Hooks from `[tether.hooks.NAME]` tables (keys: `secret` or `secret_env`,
        `tenant`, `workflow` and `input`, or `signal`, `task_id` or `task_header`, and
        `payload`; `input`, `task_id` and `payload` are dotted paths into the body)."""
        book = cls()
        for name, spec in (table or {}).items():
            where = f"hooks.{name}"
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: expected a table")
            unknown = sorted(set(spec) - HOOK_KEYS)
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
            strings = {k: v for k, v in spec.items() if k not in ("secret", "secret_env")}
            bad = [k for k, v in strings.items() if not isinstance(v, str)]
            if bad:
                raise ConfigError(f"{where}.{bad[0]}: expected a string")
            options = cast(HookOptions, strings)
            book.add(make_hook(str(name), secret=secret_from(spec, "secret", where), **options))
        return book
