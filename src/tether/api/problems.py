"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Handlers turn HTTP exceptions, validation errors, Tether errors and anything unexpected
into problems. Bodies carry a title and a safe detail only: never a stack trace, an
exception repr or a credential.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether.auth import AuthError
from tether.errors import (
    IdempotencyConflict,
    InputValidationError,
    InvalidTransition,
    TaskNotFound,
    UnknownWorkflow,
)

log = logging.getLogger("tether.api")

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldError(BaseModel):
    """One invalid field of a request."""

    loc: list[str | int] = Field(description="Path to the field, e.g. ['body', 'workflow']")
    msg: str
    type: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str = Field(default="about:blank", examples=["about:blank"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(default=None, examples=["task 0190... not found"])
    instance: str | None = Field(default=None, examples=["/v1/tasks/0190..."])
    errors: list[FieldError] | None = Field(
        default=None, description="Invalid fields (validation errors only)"
    )


class ProblemError(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or TITLES.get(status, "Error"))
        self.status = status
        self.detail = detail
        self.headers = headers
        self.errors = errors


def problem_body(
    status: int,
    detail: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return body


def problem(
    status: int,
    detail: str | None = None,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem response."""
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem_body(status, detail, instance, errors),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_TYPE,
    )


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


def _input_errors(exc: InputValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        if loc and loc[0] == "input":
            loc = loc[1:]
        out.append(
            {
                "loc": ["body", "input", *loc],
                "msg": str(e.get("msg", "invalid")),
                "type": str(e.get("type", "value_error")),
            }
        )
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that make every error a problem."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(
            exc.status, exc.detail, request=request, headers=exc.headers, errors=exc.errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail == TITLES.get(exc.status_code):
            detail = None
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, detail, request=request, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc.errors())
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(400, "the request body is not valid JSON", request=request)
        return problem(422, "the request is invalid", request=request, errors=errors)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        return problem(
            401, str(exc), request=request, headers={"WWW-Authenticate": 'Bearer realm="tether"'}
        )

    @app.exception_handler(TaskNotFound)
    async def _not_found(request: Request, exc: TaskNotFound) -> JSONResponse:
        return problem(404, "task not found", request=request)

    @app.exception_handler(InvalidTransition)
    async def _conflict(request: Request, exc: InvalidTransition) -> JSONResponse:
        return problem(409, str(exc), request=request)

    @app.exception_handler(IdempotencyConflict)
    async def _idem(request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem(
            422,
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
            422,
            str(exc),
            request=request,
            errors=[{"loc": ["body", "workflow"], "msg": str(exc), "type": "unknown_workflow"}],
        )

    @app.exception_handler(InputValidationError)
    async def _input(request: Request, exc: InputValidationError) -> JSONResponse:
        return problem(422, "invalid input", request=request, errors=_input_errors(exc))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # Logged here with the trace; the caller only learns that it failed.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, None, request=request)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems an operation may answer."""
    return {
        s: {
            "description": TITLES.get(s, "Error"),
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for s in statuses
    }
