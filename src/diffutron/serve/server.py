"""Run the server: bind the port, load the model, serve under uvicorn until SIGINT or SIGTERM.

On a signal uvicorn stops accepting connections, lets the requests in flight finish (each is
answered or times out within the request timeout), then the worker stops and the process
exits with status 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.model.adapters import parse_lora_option
from diffutron.serve.app import ServeOptions, create_app
from diffutron.serve.security import OVER_LIMIT

EMBEDDED_MODEL_ID = "diffutron-embedded"
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)
KEEP_ALIVE_S = 5  # an idle connection between two requests is closed after this long
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; more is a 400


def served_model_id(model: str | None) -> str:
    """The id clients name: a stable one for the embedded model, a directory's name, or the hub id."""
    if model is None:
        return EMBEDDED_MODEL_ID
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def adapter_paths(specs: Sequence[str], model_id: str) -> dict[str, Path]:
    """The `--lora NAME=PATH` options as names to adapter directories; each name is a model id of its
    own, so it may be neither taken twice nor the served model's id."""
    paths: dict[str, Path] = {}
    for spec in specs:
        name, path = parse_lora_option(spec)
        if name in paths or name == model_id:
            taken = "another adapter's" if name in paths else "the served model's id"
            raise DiffutronError(f"--lora {spec}: the name {name!r} is {taken}; give each adapter its own name")
        paths[name] = path
    return paths


def run_server(
    options: ServeOptions,
    *,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    dtype: str | None = None,
    adapters: Mapping[str, Path] | None = None,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Serve until a shutdown signal; `on_ready` gets the base URL once requests are accepted.

    `adapters` (name: LoRA adapter directory) are served beside the model, each under its name.
    """
    listener = bind(host, port)
    try:
        lm = Diffutron.from_pretrained(model, device=device, dtype=dtype, speed=options.speed, adapters=adapters)
        if options.compile:  # before the first request, which would otherwise wait for it
            lm.compile()
        served = dataclasses.replace(options, allowed_hosts=(*options.allowed_hosts, host))
        config = uvicorn.Config(
            create_app(lm, served),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(options.request_timeout) + 1),
            http=guarded_protocol(options.read_timeout, options.max_connections),
            ws="none",
            timeout_keep_alive=KEEP_ALIVE_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        address, bound_port = listener.getsockname()[:2]
        shown = f"[{address}]" if ":" in address else address
        server = _AnnouncingServer(config, lambda: on_ready(f"http://{shown}:{bound_port}"))
        with _signals_end_quietly():
            server.run(sockets=[listener])
    finally:
        listener.close()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), or a clear error if it cannot be had."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, protocol)
    except (OSError, UnicodeError) as error:
        raise DiffutronError(f"cannot listen on {host!r}: {error}; give an address such as 127.0.0.1") from error
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise DiffutronError(f"cannot listen on {host}:{port} ({error.strerror}): choose another --port") from error
    listener.set_inheritable(True)
    return listener


def guarded_protocol(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol with a time limit on reading each request and a connection limit."""
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), {"read_timeout": read_timeout, "limit": max_connections})


class _GuardedH11Protocol(H11Protocol):
    """A client has `read_timeout` seconds from its connection (or a request's first byte) to the
    request's last byte, headers and body; then the connection is closed. uvicorn has no such
    timeout: without it a half-sent request holds its connection for ever.

    A connection beyond `limit` is marked in the scope's state, and its request answered 503
    (`security.ConnectionLimit`).
    """

    read_timeout: float
    limit: int
    read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limit:
            self.app_state = {**self.app_state, OVER_LIMIT: True}  # this connection's copy only
        self._start_read_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):  # a request has begun and is not all here
            self._start_read_timer()
        else:
            self._stop_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)

    def _start_read_timer(self) -> None:
        if self.read_timer is None:
            self.read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _stop_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self) -> None:
        self.read_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _AnnouncingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.announce()


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """uvicorn raises the signal that stopped it again once it has shut down: make that a no-op (exit 0)."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in SHUTDOWN_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
