"""Who may talk to the server: the API key, the Host header and the connection limit, as ASGI middleware.

- With an API key every route needs `Authorization: Bearer KEY` except the chat page, its static
  files, /health and /metrics (OPEN_PATHS): a route added later is guarded unless listed there.
- The Host header must name the server: an IP address, `localhost` or a name it was told to
  serve (the --host name, --allowed-host). A page on another site whose name an attacker points
  at 127.0.0.1 (DNS rebinding) sends its own name, and is refused.
- A connection over --max-connections is answered 503 (`server.py` marks it in the scope's state).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from diffutron.serve.errors import APIError

OPEN_PATHS = frozenset({"/", "/health", "/metrics"})
OPEN_PREFIXES = ("/static/",)
LOOPBACK_NAMES = frozenset({"localhost"})
ANY_HOST = "*"  # --allowed-host '*': no Host check (behind a proxy that checks it)
OVER_LIMIT = "diffutron_over_connection_limit"  # scope["state"] key set by the server's protocol


class BearerAuth:
    """With an API key, every route outside OPEN_PATHS needs `Authorization: Bearer KEY` (else 401)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is not None and scope["type"] == "http" and not is_open(scope["path"]):
            headers = dict(scope["headers"])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                error = APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def is_open(path: str) -> bool:
    """Whether `path` is served without the API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class HostCheck:
    """A Host header that names neither an IP address nor a served name gets a 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.names = LOOPBACK_NAMES | {normal_name(name) for name in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ANY_HOST not in self.names:
            host = dict(scope["headers"]).get(b"host")
            name = host_name(host.decode("latin-1")) if host is not None else None
            if name is not None and not _is_ip_address(name) and name not in self.names:
                error = APIError(
                    400,
                    f"this server does not serve the host name {name!r}: use its address, or start it with "
                    f"--allowed-host {name}",
                    code="invalid_host",
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The name of a Host header: without its port, IPv6 brackets or trailing dot, in lower case."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")].lower() if "]" in header else header.lower()
    name, colon, port = header.rpartition(":")
    return normal_name(name if colon and port.isdigit() else header)


def normal_name(name: str) -> str:
    return name.strip().strip("[]").rstrip(".").lower()


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ConnectionLimit:
    """A request on a connection over the server's limit gets a 503 and the connection is closed."""

    def __init__(self, app: ASGIApp, max_connections: int) -> None:
        self.app = app
        self.max_connections = max_connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("state", {}).get(OVER_LIMIT):
            error = APIError(
                503,
                f"the server holds its limit of {self.max_connections} connections: retry in a moment",
                code="too_many_connections",
                headers={"Retry-After": "1", "Connection": "close"},
            )
            await error.response()(scope, receive, send)
            return
        await self.app(scope, receive, send)
