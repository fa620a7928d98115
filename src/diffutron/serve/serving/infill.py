"""`POST /v1/infill` (an extension): fill the `[MASK]` / `[MASK:n]` placeholders of a text."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from diffutron.errors import DiffutronError
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.infill import parse_placeholders
from diffutron.sampling.sampler import StepEvent
from diffutron.serve.errors import APIError
from diffutron.serve.limits import check_prompt_length
from diffutron.serve.responses import InfillResponse
from diffutron.serve.scheduler import Done, Dropped, Event, Scheduler, WorkItem
from diffutron.serve.schemas import InfillRequest
from diffutron.serve.serving.base import CLIENT_LEFT, ClientGone, Serving


@dataclass(frozen=True)
class Filled(Event):
    text: str


@dataclass(eq=False, kw_only=True)
class InfillWork(WorkItem):
    """One text to fill. It runs alone: its canvas holds text after the gaps, so it rarely shares a shape."""

    shares_batches = False
    text: str  # with placeholders
    config: GenerationConfig

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        for item in batch:
            if isinstance(item, InfillWork):
                item.fill(worker)

    def fill(self, worker: Scheduler) -> None:
        calls = 0

        def on_step(event: StepEvent) -> None:
            nonlocal calls
            calls = event.calls
            worker.model_called()
            if worker.drop_reason(self):
                event.drop(0)

        text = worker.lm.infill(self.text, self.config, callback=on_step)
        if reason := worker.drop_reason(self):
            worker.metrics.dropped_rows.labels(reason).inc()
            self.emit(Dropped(reason))
            return
        self.emit(Filled(text))
        self.emit(Done(calls, 1))


class InfillServing(Serving):
    async def create(self, body: InfillRequest, request: Request) -> Response:
        adapter = self.check_model(body.model)
        settings = self.settings(body, None)
        check_prompt_length(body.text, self.lm.context_length, "text")
        try:
            parse_placeholders(body.text)
        except DiffutronError as error:
            raise APIError(400, str(error), param="text", code="invalid_value") from error
        work = InfillWork(
            text=body.text,
            config=settings.config.replace(seed=settings.seed),
            deadline=self.deadline(),
            loop=self.loop(),
            adapter=adapter,
        )
        try:
            events, done = await self.collect(work, request)
        except ClientGone:
            return Response(status_code=CLIENT_LEFT)
        filled = "".join(event.text for event in events if isinstance(event, Filled))
        response = InfillResponse(
            id=f"infill-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=body.model,
            text=filled,
            diffutron=settings.extension(done),
        )
        return JSONResponse(response.to_json())
