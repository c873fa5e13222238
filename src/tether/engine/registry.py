"""Workflow and step definitions: what `@app.workflow` and `@app.step` register.

Input binding follows one rule set, applied at submit (to validate) and at run time (to
build the arguments): a workflow `async def wf(ctx, a: int, b: str)` takes a JSON object
`{"a": 1, "b": "x"}`; a workflow with a single parameter takes either that object form
(`{"topic": "tides"}` for `wf(ctx, topic: str)`) or the bare value (`5` for
`wf(ctx, i: int)`, an object for `wf(ctx, order: Order)` where `Order` is a model).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from tether import storable
from tether.errors import InputValidationError, NotStorable, UnknownWorkflow
from tether.models import Budget, Cost
from tether.retry import DEFAULT_RETRY, RetryBudget, RetryPolicy

WorkflowFn = Callable[..., Awaitable[Any]]


def _is_whole_value_type(annotation: Any) -> bool:
    """Types that take a whole JSON object as one value rather than as keyword args."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return False
    origin = get_origin(annotation) or annotation
    if inspect.isclass(origin) and issubclass(origin, BaseModel | dict | Mapping):
        return True
    return hasattr(annotation, "__total__")  # TypedDict


@dataclass
class InputBinding:
    """Validates a task input and turns it into the workflow's arguments."""

    params: list[inspect.Parameter]
    hints: dict[str, Any]
    _single: TypeAdapter[Any] | None = None
    _model: type[BaseModel] | None = None

    @classmethod
    def for_function(cls, fn: Callable[..., Any], skip_first: bool) -> InputBinding:
        params = list(inspect.signature(fn).parameters.values())
        if skip_first:
            params = params[1:]
        params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        try:
            hints = get_type_hints(fn)
        except NameError as exc:
            raise TypeError(
                f"cannot resolve the type hints of {fn.__qualname__}: {exc} "
                "(define input types at module level so they can be validated)"
            ) from None
        binding = cls(params=params, hints=hints)
        if len(params) == 1:
            binding._single = TypeAdapter(hints.get(params[0].name, Any))
        if params:
            fields: dict[str, Any] = {
                p.name: (
                    hints.get(p.name, Any),
                    ... if p.default is inspect.Parameter.empty else p.default,
                )
                for p in params
            }
            binding._model = create_model(
                f"{fn.__name__}_input", __config__=ConfigDict(extra="forbid"), **fields
            )
        return binding

    def _keyword_form(self, value: Any) -> bool:
        if not isinstance(value, dict) or not self.params:
            return False
        names = {p.name for p in self.params}
        if not set(value) <= names:
            return False
        if len(self.params) > 1:
            return True
        return not _is_whole_value_type(self.hints.get(self.params[0].name, Any))

    def bind(self, workflow: str, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate `value`; return (args, kwargs) for the function. Raises
        `InputValidationError` listing every problem."""
        try:
            if not self.params:
                if value not in (None, {}):
                    raise InputValidationError(
                        workflow,
                        [{"loc": ("input",), "msg": "this workflow takes no input"}],
                    )
                return (), {}
            if self._keyword_form(value):
                assert self._model is not None
                model = self._model.model_validate(value)
                return (), {p.name: getattr(model, p.name) for p in self.params}
            if len(self.params) == 1:
                assert self._single is not None
                return (self._single.validate_python(value),), {}
            raise InputValidationError(
                workflow,
                [
                    {
                        "loc": ("input",),
                        "msg": "expected a JSON object with the fields "
                        + ", ".join(p.name for p in self.params),
                    }
                ],
            )
        except ValidationError as exc:
            raise InputValidationError(
                workflow,
                [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
            ) from None


@dataclass(frozen=True)
class Fairness:
    """Which fairness key a workflow's tasks are served by (ADR 88).

    Claims serve the keys of a queue in turn, so one key's backlog does not hold back
    the others'; by default a task's key is its tenant. `key` picks one from the task's
    input (its JSON form, a dict for a keyword input), e.g.
    `Fairness(key=lambda input: input["customer_id"])`: customers of one tenant take
    turns (keys are always within the tenant). `weight` is the key's share: 2 gets two
    turns to one (the `fair_weights` setting overrides it per key).
    """

    key: Callable[[Any], Any] | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (self.weight > 0 and self.weight != float("inf")):
            raise ValueError(f"Fairness(weight=) is a positive number, not {self.weight!r}")


@dataclass(frozen=True)
class Concurrency:
    """At most `max` tasks of one concurrency key at a time (ADR 89).

    A task holds its key from its admission to its end (running, or waiting for an
    approval, a signal, a child...); a task submitted while its key is at its limit
    waits (`waiting`, reason `concurrency`), holding no slot, and is queued when a
    holder ends, in fair order. `key`: None for the workflow itself (one per tenant),
    a name (workflows declaring the same name share its limit), or a function of the
    task's JSON input (`lambda input: input["customer_id"]`: one key per customer).
    Keys are per tenant unless `fleet` (one limit across every tenant). `max=1` makes
    a singleton.
    """

    max: int
    key: str | Callable[[Any], Any] | None = None
    fleet: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise ValueError(f"Concurrency(max=) is a whole number from 1, not {self.max!r}")


@dataclass
class WorkflowDef:
    """A registered workflow."""

    name: str
    version: int
    fn: WorkflowFn
    queue: str = "default"
    retry: RetryPolicy = DEFAULT_RETRY
    budget: RetryBudget = field(default_factory=RetryBudget)
    deadline: float | None = None
    """Default time limit in seconds from submission, or None."""
    fairness: Fairness | None = None
    """How its tasks take turns with others' in their queue (None: by tenant)."""
    concurrency: Concurrency | None = None
    """The limit on how many of its tasks (of one key) run at once (None: none)."""
    spend_budget: Budget | None = None
    """Each task's spend limit unless its submission gives one (ADR 92)."""
    daily_budget: Budget | None = None
    """The spend limit of each tenant's tasks of this workflow per UTC day."""
    binding: InputBinding = field(init=False)

    def __post_init__(self) -> None:
        self.binding = InputBinding.for_function(self.fn, skip_first=True)

    def encode_input(self, value: Any) -> str:
        """Validate an input and return its JSON text (what is stored)."""
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        self.binding.bind(self.name, value)
        try:
            return storable.encode(value, "input")
        except NotStorable as exc:
            raise InputValidationError(
                self.name, [{"loc": ("input", *exc.loc), "msg": exc.reason, "type": exc.kind}]
            ) from None
        except TypeError as exc:
            raise InputValidationError(
                self.name, [{"loc": ("input",), "msg": f"not JSON serializable: {exc}"}]
            ) from None


WORKFLOW_NAME_ATTR = "__tether_workflow__"
"""The attribute `Registry.add` sets on a workflow function: the name it is registered
under (empty when it is registered under several)."""


def workflow_name(workflow: str | Callable[..., Any]) -> str:
    """The name of a workflow given by name or by its registered function."""
    if isinstance(workflow, str):
        return workflow
    name = getattr(workflow, WORKFLOW_NAME_ATTR, None)
    what = getattr(workflow, "__qualname__", repr(workflow))
    if name is None:
        raise UnknownWorkflow(f"{what} is not registered as a workflow (@app.workflow)")
    if not name:
        raise UnknownWorkflow(f"{what} is registered under several names: pass the name")
    return str(name)


WorkflowVersion = tuple[str, int]
"""A (workflow name, version) pair: what a worker claims and a task runs on."""


class Registry(Mapping[str, WorkflowDef]):
    """The registered workflows, by name and version (ADR 64).

    Several versions of one workflow may be registered at once (a rolling deploy keeps
    the old version for the tasks that started on it). As a mapping, each name stands
    for its newest version: the one a submission that names no version gets.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, dict[int, WorkflowDef]] = {}

    def add(self, wf: WorkflowDef) -> None:
        """Register `wf`; raises `ValueError` when its name and version are taken."""
        versions = self._by_name.setdefault(wf.name, {})
        if wf.version in versions:
            raise ValueError(f"workflow {wf.name!r} version {wf.version} is registered twice")
        versions[wf.version] = wf
        # So that `ctx.child(fn, ...)` can name the workflow by its function; "" when one
        # function is registered under two names (the caller must then say which).
        named = getattr(wf.fn, WORKFLOW_NAME_ATTR, None)
        with contextlib.suppress(AttributeError, TypeError):
            setattr(wf.fn, WORKFLOW_NAME_ATTR, wf.name if named in (None, wf.name) else "")

    def lookup(self, name: str, version: int | None = None) -> WorkflowDef:
        """Version `version` of `name` (None: the newest); raises `UnknownWorkflow`."""
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(sorted(self._by_name)) or "none registered"
            raise UnknownWorkflow(f"unknown workflow {name!r} (known: {known})")
        if version is None:
            return versions[max(versions)]
        wf = versions.get(version)
        if wf is None:
            have = ", ".join(str(v) for v in sorted(versions))
            raise UnknownWorkflow(
                f"workflow {name!r} has no version {version} here (registered: {have})"
            )
        return wf

    def versions_of(self, name: str) -> list[int]:
        """The registered versions of workflow `name`, oldest first (none: empty)."""
        return sorted(self._by_name.get(name, {}))

    def has(self, name: str, version: int) -> bool:
        """Whether version `version` of `name` is registered."""
        return version in self._by_name.get(name, {})

    def definitions(self) -> list[WorkflowDef]:
        """Every registered version of every workflow."""
        return [wf for versions in self._by_name.values() for wf in versions.values()]

    def versions(self) -> list[WorkflowVersion]:
        """Every registered (name, version), sorted: what this app's workers claim."""
        return sorted((n, v) for n, versions in self._by_name.items() for v in versions)

    def __getitem__(self, name: str) -> WorkflowDef:
        versions = self._by_name[name]
        return versions[max(versions)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


@dataclass
class StepDef:
    """A function registered with `@app.step`: its name and policies."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy | None = None
    timeout: float | None = None
    queue: str | None = None
    """The queue whose workers run it (None: the task's own; ADR 93)."""
    compensate: str | None = None
    """The name of the `@app.step` that undoes this one (ADR 83)."""
    integration: str | None = None
    """The outside system the step calls (flow control keys on it; ADR 87)."""
    estimate: Cost | None = None
    """What one attempt may spend: reserved on the budgets before it runs (ADR 92)."""


def compensation_name(compensate: Callable[..., Any] | str) -> str:
    """The step name a `compensate=` argument designates: an `@app.step` function, or
    the name it was declared under. Raises TypeError for anything else, at the call:
    a compensation must be found by name by whichever worker runs it, maybe days later."""
    if isinstance(compensate, str):
        return compensate
    definition = getattr(compensate, "__tether_step__", None)
    if isinstance(definition, StepDef):
        return definition.name
    raise TypeError(
        f"compensate= takes an @app.step function or its name, not {compensate!r}: "
        "the worker that undoes the step finds its compensation by name"
    )


@functools.lru_cache(maxsize=4096)
def result_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """How to rebuild a step's recorded JSON result as the type the function declares
    (so replay returns a model where the first run returned a model)."""
    try:
        annotation = get_type_hints(fn).get("return")
    except Exception:
        return None
    if annotation is None or annotation is Any or annotation is type(None):
        return None
    if annotation in (int, float, str, bool, dict, list):
        return None
    try:
        return TypeAdapter(annotation)
    except Exception:
        return None
