"""The model worker: one thread that takes waiting requests from a bounded queue and decodes them in batches.

Requests whose settings can share one canvas (the same `GenerationConfig` apart from the seed)
are decoded together as one batch of prompts of different lengths; each row draws from its own
random stream, seeded by its request (`sampling/streams.py`), so a seeded answer does not
depend on its batch. Rows finish independently: once a row's answer is decided its client is
answered, and rows whose client went away or timed out stop drawing and committing.

New requests wait for the running batch to end (no continuous batching): the sampler decodes
all rows of a batch in lockstep, block by block, with one cache refresh per block for all rows,
so a row cannot join at another row's block boundary without a per-row block schedule.
The event loop and this thread talk through each job's asyncio queue only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.frames import DenoisingFrame, FrameBuilder
from diffutron.sampling.sampler import StepEvent, sample
from diffutron.serve.answers import AnswerTracker
from diffutron.serve.errors import APIError
from diffutron.serve.metrics import Metrics

logger = logging.getLogger("diffutron.serve")


@dataclass(frozen=True)
class Row:
    """One answer to produce: `n` copies of a prompt are `n` rows."""

    prompt: list[int]
    seed: int
    choice: int  # its index among the response's choices


# What the worker tells a request's handler, in order.
@dataclass(frozen=True)
class Delta:
    choice: int
    text: str


@dataclass(frozen=True)
class Frame:
    """The canvas of one answer after one model call (stream_options.include_denoising)."""

    choice: int
    denoising: DenoisingFrame


@dataclass(frozen=True)
class Finished:
    choice: int
    text: str
    finish_reason: str
    tokens: int


@dataclass(frozen=True)
class Done:
    model_calls: int
    batch_rows: int  # answers decoded in the same batch, this request's included

    def summary(self) -> dict[str, int]:
        return {"model_calls": self.model_calls, "batch_rows": self.batch_rows}


@dataclass(frozen=True)
class Failed:
    error: APIError


Event = Delta | Frame | Finished | Done | Failed
_job_numbers = itertools.count()


@dataclass(eq=False)
class Job:
    """One request on its way through the queue and the worker."""

    kind: Literal["generate", "infill"]
    rows: list[Row]
    config: GenerationConfig  # without seed: the rows carry theirs
    deadline: float  # time.monotonic() after which nobody waits for the answer
    loop: asyncio.AbstractEventLoop
    stops: tuple[str, ...] = ()
    stream: bool = False
    denoising: bool = False
    text: str = ""  # infill: the text with placeholders
    number: int = field(default_factory=lambda: next(_job_numbers))
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: str | None = None  # why the handler gave up: "client_left" or "timeout"
    settled: bool = False  # the worker sent Done or Failed

    @property
    def batch_key(self) -> tuple[object, ...]:
        """Jobs with equal keys can share a canvas."""
        return (self.kind, self.config) if self.kind == "generate" else (self.kind, self.number)

    def emit(self, event: Event) -> None:
        if isinstance(event, (Done, Failed)):
            self.settled = True
        if not self.loop.is_closed():  # after shutdown nobody is left to tell
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Scheduler:
    """Owns the model: a single worker thread decodes batches of queued jobs."""

    def __init__(
        self, lm: Diffutron, metrics: Metrics, *, max_batch_size: int, batch_wait_s: float, max_queue: int
    ) -> None:
        self.lm = lm
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.max_queue = max_queue
        self.pending: list[Job] = []
        self.condition = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._work, name="diffutron-model-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def healthy(self) -> bool:
        return self.thread.is_alive() and not self.stopping

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it: 429 when the queue is full, 503 when shutting down."""
        with self.condition:
            if self.stopping or not self.thread.is_alive():
                raise APIError(503, "the server is shutting down or its model worker stopped: retry elsewhere")
            if len(self.pending) >= self.max_queue:
                raise APIError(
                    429,
                    f"the queue is full ({self.max_queue} requests waiting): retry in a moment",
                    code="queue_full",
                    headers={"Retry-After": "1"},
                )
            self.pending.append(job)
            self.metrics.queue_depth.set(len(self.pending))
            self.condition.notify_all()

    def withdraw(self, job: Job, reason: str) -> None:
        """The handler gave up on `job`: drop it from the queue, or its rows at the worker's next step."""
        job.cancelled = job.cancelled or reason
        with self.condition:
            if job in self.pending:
                self.pending.remove(job)
                self.metrics.queue_depth.set(len(self.pending))
                self.metrics.dropped_rows.labels(job.cancelled).inc(len(job.rows))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker: the running batch is dropped at its next step, waiting jobs get a 503."""
        with self.condition:
            self.stopping = True
            waiting, self.pending = self.pending, []
            self.metrics.queue_depth.set(0)
            self.condition.notify_all()
        for job in waiting:
            job.emit(Failed(APIError(503, "the server is shutting down: retry elsewhere")))
        self.thread.join(timeout)

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._decode(batch)
            except DiffutronError as error:  # inputs are checked before queueing; this is a late one
                self._fail(batch, APIError(400, str(error)))
            except Exception as error:  # a failed batch must not stop the worker
                logger.exception("batch of %d requests failed", len(batch))
                self._fail(batch, APIError(500, f"generation failed: {type(error).__name__}: {error}"))

    def _next_batch(self) -> list[Job] | None:
        """The oldest waiting job and the compatible ones behind it, up to max_batch_size rows.

        Waits at most batch_wait_s for more compatible jobs while the batch is not full.
        """
        with self.condition:
            while not self.stopping and not self.pending:
                self.condition.wait()
            if self.stopping:
                return None
            batch = [self.pending.pop(0)]
            rows = len(batch[0].rows)
            window_end = time.monotonic() + self.batch_wait_s
            while rows < self.max_batch_size and not self.stopping:
                for job in list(self.pending):
                    if job.batch_key == batch[0].batch_key and rows + len(job.rows) <= self.max_batch_size:
                        self.pending.remove(job)
                        batch.append(job)
                        rows += len(job.rows)
                remaining = window_end - time.monotonic()
                if rows >= self.max_batch_size or remaining <= 0 or batch[0].kind != "generate":
                    break
                self.condition.wait(remaining)
            self.metrics.queue_depth.set(len(self.pending))
        live = []
        for job in batch:
            if reason := self._drop_reason(job):  # given up (or shutting down) while the batch was filling
                self.metrics.dropped_rows.labels(reason).inc(len(job.rows))
                job.emit(Failed(self._dropped_error(reason)))
            else:
                live.append(job)
        if live:
            self.metrics.batch_rows.observe(sum(len(job.rows) for job in live))
        return live

    def _decode(self, batch: list[Job]) -> None:
        if not batch:
            return
        if batch[0].kind == "infill":
            self._infill(batch[0])
            return
        entries = [(job, row) for job in batch for row in job.rows]
        config = batch[0].config
        trackers = [AnswerTracker(self.lm, len(row.prompt), config.max_new_tokens, job.stops) for job, row in entries]
        frames = FrameBuilder.for_prompts(
            self.lm.tokenizer, [len(row.prompt) for _, row in entries], config.max_new_tokens
        )
        open_rows = {job.number: len(job.rows) for job in batch}
        gone: set[int] = set()  # rows dropped because nobody waits for them any more
        calls = 0

        def finish(index: int, delta: str) -> None:
            job, row = entries[index]
            tracker = trackers[index]
            if job.stream and delta:
                job.emit(Delta(row.choice, delta))
            assert tracker.text is not None and tracker.finish_reason is not None
            tokens = len(self.lm.encode(tracker.text)) if tracker.text else 0
            self.metrics.generated_tokens.inc(tokens)
            job.emit(Finished(row.choice, tracker.text, tracker.finish_reason, tokens))
            open_rows[job.number] -= 1
            if open_rows[job.number] == 0:
                job.emit(Done(calls, len(entries)))

        def on_step(event: StepEvent) -> None:
            nonlocal calls
            calls = event.calls
            self.metrics.model_calls.inc()
            changed = event.committed.any(dim=1).tolist()
            finished = event.finished.tolist() if event.finished is not None else [False] * len(entries)
            canvas: list[list[int]] | None = None
            for index, ((job, row), tracker) in enumerate(zip(entries, trackers)):
                if tracker.finished or index in gone:
                    continue
                if reason := self._drop_reason(job):
                    self.metrics.dropped_rows.labels(reason).inc()
                    gone.add(index)
                    event.drop(index)
                    continue
                # a row is read when it streams, could have met a stop string, or has just ended
                if not job.denoising and not (changed[index] and (job.stream or job.stops or finished[index])):
                    continue
                canvas = canvas if canvas is not None else event.canvas.tolist()
                if job.denoising:
                    job.emit(Frame(row.choice, frames.frame(event, index, row.choice)))
                delta = tracker.update(canvas[index])
                if tracker.finished:
                    finish(index, delta)
                    event.drop(index)
                elif job.stream and delta:
                    job.emit(Delta(row.choice, delta))

        final = sample(
            self.lm.model,
            self.lm.tokenizer,
            [row.prompt for _, row in entries],
            config,
            callback=on_step,
            row_seeds=[row.seed for _, row in entries],
        ).tolist()
        for index, ((job, _), tracker) in enumerate(zip(entries, trackers)):
            if not tracker.finished and self._drop_reason(job) is None:
                finish(index, tracker.close(final[index]))
        for job in batch:
            if not job.settled and (reason := self._drop_reason(job)):
                job.emit(Failed(self._dropped_error(reason)))

    def _infill(self, job: Job) -> None:
        """Infill requests run alone: their canvases hold text after the gaps, so they rarely share a shape."""
        calls = 0

        def on_step(event: StepEvent) -> None:
            nonlocal calls
            calls = event.calls
            self.metrics.model_calls.inc()
            if self._drop_reason(job):
                event.drop(0)

        row = job.rows[0]
        text = self.lm.infill(job.text, job.config.replace(seed=row.seed), callback=on_step)
        if reason := self._drop_reason(job):
            self.metrics.dropped_rows.labels(reason).inc()
            job.emit(Failed(self._dropped_error(reason)))
            return
        job.emit(Finished(0, text, "stop", 0))
        job.emit(Done(calls, 1))

    def _drop_reason(self, job: Job) -> str | None:
        """Why a job's rows should be dropped now (None: keep decoding them)."""
        if self.stopping:
            return "shutdown"
        return job.cancelled or ("timeout" if time.monotonic() > job.deadline else None)

    @staticmethod
    def _dropped_error(reason: str) -> APIError:
        if reason == "shutdown":
            return APIError(503, "the server is shutting down: retry elsewhere")
        return APIError(504, f"the request was dropped ({reason.replace('_', ' ')})", code=reason)

    @staticmethod
    def _fail(batch: list[Job], error: APIError) -> None:
        for job in batch:
            if not job.settled:
                job.emit(Failed(error))
