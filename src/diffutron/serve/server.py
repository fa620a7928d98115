"""Run the server: bind the port, load the model, serve under uvicorn until SIGINT or SIGTERM.

On a signal uvicorn stops accepting connections, lets the requests in flight finish (each is
answered or times out within the request timeout), then the worker stops and the process
exits with status 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.serve.app import ServeOptions, create_app

EMBEDDED_MODEL_ID = "diffutron-embedded"
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def served_model_id(model: str | None) -> str:
    """The id clients name: a stable one for the embedded model, a directory's name, or the hub id."""
    if model is None:
        return EMBEDDED_MODEL_ID
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


def run_server(
    options: ServeOptions,
    *,
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    dtype: str | None = None,
    on_ready: Callable[[str], None] = print,
) -> None:
    """Serve until a shutdown signal; `on_ready` gets the base URL once requests are accepted."""
    listener = bind(host, port)
    try:
        lm = Diffutron.from_pretrained(model, device=device, dtype=dtype, speed=options.speed)
        if options.compile:  # before the first request, which would otherwise wait for it
            lm.compile()
        config = uvicorn.Config(
            create_app(lm, options),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(options.request_timeout) + 1),
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
