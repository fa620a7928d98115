"""How the server schedules and guards requests: the `diffutron serve` options."""

from __future__ import annotations

from dataclasses import dataclass

from diffutron.errors import DiffutronError
from diffutron.sampling.presets import SPEEDS


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

    def __post_init__(self) -> None:
        if self.speed not in SPEEDS:
            raise DiffutronError(f"unknown speed {self.speed!r}; choose one of: {', '.join(SPEEDS)}")
        for name in ("max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise DiffutronError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.batch_wait_ms >= 0:
            raise DiffutronError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if not self.request_timeout > 0:
            raise DiffutronError(f"--request-timeout must be > 0 seconds, got {self.request_timeout}")
        if self.api_key is not None and not self.api_key.strip():
            raise DiffutronError("--api-key is empty: give a key, or leave it out to serve without one")

    @property
    def stall_s(self) -> float:
        """A worker that holds work without progress for this long is reported stuck: by then the
        requests it holds have used half their time without a single model call."""
        return self.request_timeout / 2
