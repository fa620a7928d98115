"""What every serving class shares: the served model's checks, a request's settings, and the way a
work item is submitted and its events awaited, with the one mapping of the worker's outcomes to HTTP.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.presets import speed_config
from diffutron.serve.errors import APIError
from diffutron.serve.options import ServeOptions
from diffutron.serve.responses import Extension
from diffutron.serve.scheduler import Done, Dropped, Event, Failed, Refused, Scheduler, WorkItem
from diffutron.serve.schemas import DRAWN_SEEDS, DiffusionSettings

DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks that its client is still there
CLIENT_LEFT = 499  # nginx's code for a client that left: nobody reads it


class ClientGone(Exception):
    """The client of a non-streamed request closed its connection."""


@dataclass(frozen=True)
class ServingContext:
    """What the serving classes of one application share."""

    lm: Diffutron
    options: ServeOptions
    scheduler: Scheduler
    created: int  # when the server started (the model card's `created`)


@dataclass(frozen=True)
class Settings:
    """A request's sampler settings, its seed (drawn if not given) and the speed preset they came from."""

    config: GenerationConfig
    seed: int
    speed: str

    def extension(self, done: Done) -> Extension:
        """The `diffutron` record of an answer made with these settings."""
        settings = self.config.to_dict() | {"seed": self.seed}
        return Extension(seed=self.seed, speed=self.speed, settings=settings, **done.summary())


class Serving:
    """The base of a serving class: one per endpoint family, held on `app.state`."""

    def __init__(self, context: ServingContext) -> None:
        self.context = context
        self.lm = context.lm
        self.options = context.options
        self.scheduler = context.scheduler

    def check_model(self, name: str) -> str | None:
        """The LoRA adapter a request's `model` names (None: the base model); 404 for any other name."""
        if name == self.options.model_id:
            return None
        if name in self.lm.adapters.names:
            return name
        served = ", ".join(repr(model) for model in (self.options.model_id, *self.lm.adapters.names))
        raise APIError(
            404,
            f"model {name!r} is not served here; this server serves {served}",
            param="model",
            code="model_not_found",
        )

    def settings(self, body: DiffusionSettings, max_tokens: int | None) -> Settings:
        speed = body.speed or self.options.speed
        changes = body.sampler_settings()
        if max_tokens is not None:
            changes["max_new_tokens"] = max_tokens
        try:
            config = speed_config(speed, **changes)
        except DiffutronError as error:
            raise APIError.bad_setting(error) from error
        seed = body.seed if body.seed is not None else secrets.randbelow(DRAWN_SEEDS)
        return Settings(config, seed, speed)

    def deadline(self) -> float:
        return time.monotonic() + self.options.request_timeout

    @staticmethod
    def loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def submit(self, item: WorkItem) -> None:
        try:
            self.scheduler.submit(item)
        except Refused as refusal:
            raise refused_error(refusal) from None

    async def next_event(self, item: WorkItem, request: Request | None) -> Event:
        """The worker's next word on `item`; 504 past its deadline, ClientGone if the client left."""
        while True:
            remaining = item.deadline - time.monotonic()
            if remaining <= 0:
                self.scheduler.withdraw(item, "timeout")
                raise APIError(
                    504,
                    f"no answer within the request timeout ({self.options.request_timeout:g} s): "
                    "ask for fewer tokens or retry later",
                    code="timeout",
                )
            try:
                return await asyncio.wait_for(item.events.get(), min(remaining, DISCONNECT_POLL_S))
            except asyncio.TimeoutError:
                if request is not None and await request.is_disconnected():
                    self.scheduler.withdraw(item, "client_left")
                    raise ClientGone from None

    async def collect(self, item: WorkItem, request: Request) -> tuple[list[Event], Done]:
        """Submit `item` and wait for its whole answer: its events and its `Done`.

        An outcome other than an answer is raised as its APIError; ClientGone if the client left.
        """
        self.submit(item)
        events: list[Event] = []
        while True:
            event = await self.next_event(item, request)
            if isinstance(event, Done):
                return events, event
            if isinstance(event, (Dropped, Failed)):
                raise outcome_error(event)
            events.append(event)


def outcome_error(outcome: Dropped | Failed) -> APIError:
    """The HTTP answer to a work item the worker did not answer."""
    if isinstance(outcome, Failed):
        return APIError(400 if outcome.kind == "invalid" else 500, outcome.message)
    if outcome.reason == "shutdown":
        return APIError(503, "the server is shutting down: retry elsewhere")
    return APIError(504, f"the request was dropped ({outcome.reason.replace('_', ' ')})", code=outcome.reason)


def refused_error(refusal: Refused) -> APIError:
    """The HTTP answer to a work item the worker would not take."""
    if refusal.reason == "shutdown":
        return APIError(503, "the server is shutting down or its model worker stopped: retry elsewhere")
    return APIError(
        429,
        f"the queue is full ({refusal.max_queue} requests waiting): retry in a moment",
        code="queue_full",
        headers={"Retry-After": "1"},
    )
