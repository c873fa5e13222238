"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Handlers turn HTTP exceptions, validation errors, Tether errors and anything unexpected
into problems, each of a kind in `tether.api.problem_types` (its `type` URI). Bodies
carry a title and a safe detail only: never a stack trace, an exception repr or a
credential.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tether.api import problem_types
from tether.api.problem_types import ProblemType
from tether.auth import AuthError
from tether.errors import (
    IdempotencyConflict,
    InputValidationError,
    InvalidTransition,
    NotStorable,
    StoreUnavailable,
    TaskNotFound,
    UnknownWorkflow,
)

log = logging.getLogger("tether.api")

PROBLEM_TYPE = "application/problem+json"

Kind = ProblemType | int
"""A problem's kind, or a bare HTTP status (which takes its status's kind)."""


def _kind(kind: Kind) -> ProblemType | None:
    return kind if isinstance(kind, ProblemType) else problem_types.of_status(kind)


def _status(kind: Kind) -> int:
    return kind.status if isinstance(kind, ProblemType) else kind


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int] = Field(description="Path to the field, e.g. ['body', 'workflow']")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details. `type` names the kind of error (the list
    is in docs/api.md); `title` is the same for every problem of that type."""

    type: str = Field(
        default="about:blank",
        examples=[problem_types.TASK_NOT_FOUND.uri],
        json_schema_extra={"enum": [*(k.uri for k in problem_types.PROBLEM_TYPES), "about:blank"]},
    )
    title: str = Field(examples=[problem_types.TASK_NOT_FOUND.title])
    status: int = Field(examples=[404])
    detail: str | None = Field(default=None, examples=["task not found"])
    instance: str | None = Field(default=None, examples=["/v1/tasks/0190..."])
    errors: list[FieldError] | None = Field(
        default=None, description="Invalid fields (validation errors only)"
    )


class ProblemError(Exception):
    """Raise from a route to answer with a problem: `ProblemError(TASK_NOT_FOUND)`, or
    with a bare status (`ProblemError(404, ...)`), which takes its status's kind."""

    def __init__(
        self,
        kind: Kind,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or _title(kind))
        self.kind = kind
        self.status = _status(kind)
        self.detail = detail
        self.headers = headers
        self.errors = errors


def _title(kind: Kind) -> str:
    found = _kind(kind)
    if found is not None:
        return found.title
    try:
        return HTTPStatus(_status(kind)).phrase
    except ValueError:
        return "Error"


def problem_body(
    kind: Kind,
    detail: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON body of a problem of `kind`."""
    found = _kind(kind)
    body: dict[str, Any] = {
        "type": found.uri if found is not None else "about:blank",
        "title": _title(kind),
        "status": _status(kind),
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return body


def problem(
    kind: Kind,
    detail: str | None = None,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem response."""
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem_body(kind, detail, instance, errors),
        status_code=_status(kind),
        headers=headers,
        media_type=PROBLEM_TYPE,
    )


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path, for `Allow` on a 405
    (Starlette names only the methods of the first route whose path matched). Each
    method is tried against the routes, so included routers are asked too."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


def _field_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        out.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "value_error")),
            }
        )
    return out


def input_errors(
    exc: InputValidationError, at: tuple[str | int, ...] = ("body",)
) -> list[dict[str, Any]]:
    """The field errors of a workflow input, located under `at` (`body`, or `body,
    tasks, i` in a batch)."""
    out = []
    for e in exc.errors:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        if loc and loc[0] == "input":
            loc = loc[1:]
        out.append(
            {
                "loc": [*at, "input", *loc],
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "value_error")),
            }
        )
    return out


def not_storable_error(exc: NotStorable, at: tuple[str | int, ...] | None = None) -> dict[str, Any]:
    """The field error of a value `tether.storable` refused: located under `at`, or
    (None) under `body` and the argument's name."""
    where = ("body", exc.field) if at is None else at
    return {"loc": [*where, *exc.loc], "msg": exc.reason, "type": exc.kind}


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(
            exc.kind, exc.detail, request=request, headers=exc.headers, errors=exc.errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == HTTPStatus(exc.status_code).phrase:
            detail = None
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, detail, request=request, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                problem_types.MALFORMED_REQUEST,
                "the request body is not valid JSON",
                request=request,
            )
        return problem(
            problem_types.INVALID_REQUEST,
            "the request is invalid",
            request=request,
            errors=errors,
        )

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        return problem(
            problem_types.UNAUTHENTICATED,
            str(exc),
            request=request,
            headers={"WWW-Authenticate": 'Bearer realm="tether"'},
        )

    @app.exception_handler(TaskNotFound)
    async def _not_found(request: Request, exc: TaskNotFound) -> JSONResponse:
        return problem(problem_types.TASK_NOT_FOUND, "task not found", request=request)

    @app.exception_handler(InvalidTransition)
    async def _conflict(request: Request, exc: InvalidTransition) -> JSONResponse:
        return problem(problem_types.INVALID_TRANSITION, str(exc), request=request)

    @app.exception_handler(IdempotencyConflict)
    async def _idem(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem(
            problem_types.IDEMPOTENCY_CONFLICT,
            "the Idempotency-Key was already used with a different request body",
            request=request,
            errors=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": "key reused with a different body",
                    "type": "idempotency_conflict",
                }
            ],
        )

    @app.exception_handler(UnknownWorkflow)
    async def _unknown(request: Request, exc: UnknownWorkflow) -> JSONResponse:
        return problem(
            problem_types.UNKNOWN_WORKFLOW,
            str(exc),
            request=request,
            errors=[{"loc": ["body", "workflow"], "msg": str(exc), "type": "unknown_workflow"}],
        )

    @app.exception_handler(InputValidationError)
    async def _input(request: Request, exc: InputValidationError) -> JSONResponse:
        return problem(
            problem_types.INVALID_INPUT, "invalid input", request=request, errors=input_errors(exc)
        )

    @app.exception_handler(NotStorable)
    async def _not_storable(request: Request, exc: NotStorable) -> JSONResponse:
        # Mostly refused earlier, by the input rules of every request (tether.api.inputs);
        # what reaches here is a stored value nested too deep, or a route's own check.
        return problem(
            problem_types.INVALID_REQUEST,
            "the request holds a value Tether does not accept",
            request=request,
            errors=[not_storable_error(exc)],
        )

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # Not logged here: the store logs the outage once, not once per request.
        return problem(
            problem_types.UNAVAILABLE,
            "the database is unavailable; retry after the Retry-After delay",
            request=request,
            headers=retry_after(exc.retry_after),
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # Logged here with the trace; the caller only learns that it failed.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(problem_types.INTERNAL_ERROR, None, request=request)


def retry_after(seconds: float) -> dict[str, str]:
    """The `Retry-After` header asking for `seconds` (whole, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems an operation may answer."""
    return {s: problem_response(s) for s in statuses}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response of a problem with `status`."""
    return {
        "description": description or HTTPStatus(status).phrase,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
