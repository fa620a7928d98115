"""How the server schedules and guards requests: the `diffutron serve` options."""

from __future__ import annotations

from dataclasses import dataclass

from diffutron.errors import DiffutronError
from diffutron.model.chat import USER_TAG_RULES
from diffutron.sampling.presets import SPEEDS
from diffutron.serve.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_TOKENS,
    DEFAULT_READ_TIMEOUT_S,
    check_api_key,
    check_float_options,
)


@dataclass(frozen=True)
class ServeOptions:
    """How the server schedules and guards requests (the `diffutron serve` options)."""

    model_id: str
    speed: str = "exact"
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    max_queue: int = 64
    request_timeout: float = 120.0
    api_key: str | None = None
    continuous_batching: bool = True
    compile: bool = False  # torch.compile the encoder before serving (`run_server` does it)
    # the guards (serve/limits.py, serve/security.py; docs/serving.md, "Limits and errors")
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # applied by `run_server`'s protocol
    read_timeout: float = DEFAULT_READ_TIMEOUT_S  # applied by `run_server`'s protocol
    allowed_hosts: tuple[str, ...] = ()  # host names served besides IP addresses and localhost
    openapi: bool = False  # serve /openapi.json (behind the key)
    user_tags: str = "keep"  # chat tags typed in user turns: keep, escape or refuse

    def __post_init__(self) -> None:
        if self.speed not in SPEEDS:
            raise DiffutronError(f"unknown speed {self.speed!r}; choose one of: {', '.join(SPEEDS)}")
        for name in ("max_batch_size", "max_queue", "max_request_tokens", "max_connections"):
            if getattr(self, name) < 1:
                raise DiffutronError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        check_float_options(
            batch_wait_ms=self.batch_wait_ms, request_timeout=self.request_timeout, read_timeout=self.read_timeout
        )
        check_api_key(self.api_key)
        if self.user_tags not in USER_TAG_RULES:
            raise DiffutronError(f"--user-tags must be one of {', '.join(USER_TAG_RULES)}, got {self.user_tags!r}")

    @property
    def stall_s(self) -> float:
        """A worker that holds work without progress for this long is reported stuck: by then the
        requests it holds have used half their time without a single model call."""
        return self.request_timeout / 2
