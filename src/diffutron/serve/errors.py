"""OpenAI-shaped error bodies: `{"error": {"message", "type", "param", "code"}}` for every failure."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diffutron.errors import DiffutronError, SettingError

logger = logging.getLogger("diffutron.serve")
MAX_BODY_BYTES = 1024 * 1024  # a request body over 1 MiB gets a 413

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|list\[.*\]|dict\[.*\])$")


class APIError(Exception):
    """A failure to answer with `status` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers

    @classmethod
    def bad_setting(cls, error: DiffutronError) -> APIError:
        """A 400 for a sampler setting that `GenerationConfig` refused, naming the field it is about
        (`max_new_tokens` is OpenAI's `max_tokens` here)."""
        param = error.param if isinstance(error, SettingError) else None
        param = "max_tokens" if param == "max_new_tokens" else param
        return cls(400, str(error).replace("max_new_tokens", "max_tokens"), param=param, code="invalid_value")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the app can raise, answered in the OpenAI shape."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return validation_error(error.errors()).response()

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        return APIError(error.status_code, message, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return APIError(500, f"internal error: {type(error).__name__}: {error}").response()


class BodyLimit:
    """ASGI middleware: a request body over MAX_BODY_BYTES gets a 413 before anything reads it.

    A body without a Content-Length (chunked) is read here, up to the limit, and handed on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > MAX_BODY_BYTES:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        error = APIError(413, f"the request body is larger than {MAX_BODY_BYTES} bytes (1 MiB): send less text")
        await error.response()(scope, receive, send)


def validation_error(errors: list[dict[str, Any]]) -> APIError:
    """A 400 that names the first field pydantic refused and says why."""
    # of a union's errors, the one from the member of the right type says what is wrong
    informative = [error for error in errors if not str(error.get("type", "")).endswith("_type")]
    first = (informative or errors or [{"msg": "invalid request", "loc": ()}])[0]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return APIError(400, f"the body is not valid JSON ({detail}): send a JSON object", code="invalid_json")
    if first.get("type") == "unsupported_parameter":
        name = first["ctx"]["name"]
        return APIError(400, first["msg"], param=name, code="unsupported_parameter")
    if first.get("type") == "invalid_unicode":  # the field's path, found by the check itself
        return APIError(400, first["msg"], param=first["ctx"]["name"], code="invalid_value")
    # the field's path, without "body" and the union members pydantic names in it ("str", "list[TextPart]")
    parts = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(part for part in parts if not _UNION_MEMBER.match(part))
    if first.get("type") == "missing":
        if not param:  # the body itself
            return APIError(400, "the request has no body: send a JSON object", code="missing_required_parameter")
        return APIError(400, f"{param} is required", param=param, code="missing_required_parameter")
    if first.get("type") == "extra_forbidden":
        return APIError(
            400, f"unknown field {param!r}: this server does not take it", param=param or None, code="unknown_parameter"
        )
    message = f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid request")
    return APIError(400, message, param=param or None, code="invalid_value")
