"""The model worker: one thread that takes waiting requests from a bounded queue and decodes them in batches.

Requests whose settings can share one canvas (the same `GenerationConfig` apart from the seed)
are decoded together as one batch of prompts of different lengths; each row draws from its own
random stream, seeded by its request (`sampling/streams.py`), so a seeded answer does not
depend on its batch.

Continuous batching: every row of the sampler's `Decoder` follows its own block schedule, so a
row whose answer is decided is answered and leaves at once, one whose client went away or timed
out leaves at the next call, and waiting requests of the same settings join at the next model
call (stochastic transfer, whose rows go from block to block together, is the exception).
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
from diffutron.model.chat import ANSWER_END
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.frames import DenoisingFrame, FrameBuilder
from diffutron.sampling.sampler import Decoder, StepEvent, build_canvas
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
        self,
        lm: Diffutron,
        metrics: Metrics,
        *,
        max_batch_size: int,
        batch_wait_s: float,
        max_queue: int,
        continuous: bool = True,
    ) -> None:
        self.lm = lm
        self.continuous = continuous  # let waiting jobs join a running batch (where its decoder allows it)
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.max_queue = max_queue
        self.pending: list[Job] = []
        self.condition = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._work, name="diffutron-model-worker", daemon=True)
        self.running: list[Job] = []  # the jobs of the batch being decoded, joiners included

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
            self.running = list(batch)
            try:
                self._decode(batch)
            except DiffutronError as error:  # inputs are checked before queueing; this is a late one
                self._fail(self.running, APIError(400, str(error)))
            except Exception as error:  # a failed batch must not stop the worker
                logger.exception("batch of %d requests failed", len(self.running))
                self._fail(self.running, APIError(500, f"generation failed: {type(error).__name__}: {error}"))

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
        return self._live(batch)

    def joiners(self, key: tuple[object, ...], room: int) -> list[Job]:
        """Waiting jobs that may join a running batch with `key` now, up to `room` rows.

        Taken from the front of the queue only while they fit the batch, so that a job of another
        kind is never overtaken: once one waits at the front, the batch takes no more and drains.
        """
        taken: list[Job] = []
        with self.condition:
            while self.pending and not self.stopping:
                job = self.pending[0]
                if job.batch_key != key or len(job.rows) > room:
                    break
                taken.append(self.pending.pop(0))
                room -= len(job.rows)
            if taken:
                self.metrics.queue_depth.set(len(self.pending))
        return self._live(taken)

    def _live(self, jobs: list[Job]) -> list[Job]:
        """`jobs` less those given up (or shutting down) while they waited, which are told so."""
        live = []
        for job in jobs:
            if reason := self.drop_reason(job):
                self.metrics.dropped_rows.labels(reason).inc(len(job.rows))
                job.emit(Failed(self.dropped_error(reason)))
            else:
                live.append(job)
        return live

    def _decode(self, batch: list[Job]) -> None:
        if not batch:
            return
        if batch[0].kind == "infill":
            self._infill(batch[0])
            return
        _Batch(self, batch[0].config).run(batch)

    def _infill(self, job: Job) -> None:
        """Infill requests run alone: their canvases hold text after the gaps, so they rarely share a shape."""
        calls = 0

        def on_step(event: StepEvent) -> None:
            nonlocal calls
            calls = event.calls
            self.metrics.model_calls.inc()
            if self.drop_reason(job):
                event.drop(0)

        row = job.rows[0]
        text = self.lm.infill(job.text, job.config.replace(seed=row.seed), callback=on_step)
        if reason := self.drop_reason(job):
            self.metrics.dropped_rows.labels(reason).inc()
            job.emit(Failed(self.dropped_error(reason)))
            return
        job.emit(Finished(0, text, "stop", 0))
        job.emit(Done(calls, 1))

    def drop_reason(self, job: Job) -> str | None:
        """Why a job's rows should be dropped now (None: keep decoding them)."""
        if self.stopping:
            return "shutdown"
        return job.cancelled or ("timeout" if time.monotonic() > job.deadline else None)

    @staticmethod
    def dropped_error(reason: str) -> APIError:
        if reason == "shutdown":
            return APIError(503, "the server is shutting down: retry elsewhere")
        return APIError(504, f"the request was dropped ({reason.replace('_', ' ')})", code=reason)

    @staticmethod
    def _fail(batch: list[Job], error: APIError) -> None:
        for job in batch:
            if not job.settled:
                job.emit(Failed(error))


@dataclass(eq=False)
class _Entry:
    """One row of the running batch: an answer of a job, from the call at which it joined."""

    job: Job
    row: Row
    tracker: AnswerTracker
    joined: int  # the decoder's model calls when the row joined
    gone: bool = False  # dropped: nobody waits for it any more


class _Batch:
    """The running batch: jobs with one shared config, decoded by one `Decoder`, one model call at a time.

    When the decoder is `continuous`, a finished row is answered and taken out at once, and
    waiting jobs of the same kind join at the next call (unless the server was told not to);
    otherwise (stochastic transfer) the rows go from block to block together, finished rows stay
    (idle) and the batch runs until all are done.
    """

    def __init__(self, scheduler: Scheduler, config: GenerationConfig) -> None:
        self.scheduler = scheduler
        self.lm = scheduler.lm
        self.metrics = scheduler.metrics
        self.config = config
        self.decoder = Decoder(
            self.lm.model,
            self.lm.tokenizer,
            config,
            masks=config.max_new_tokens,
            stop_texts=(ANSWER_END,) if config.early_stop else None,
        )
        self.entries: list[_Entry] = []  # in the decoder's row order
        self.frames = FrameBuilder(self.lm.tokenizer)
        self.open_rows: dict[int, int] = {}  # job number -> its rows not answered yet
        self.peak_rows: dict[int, int] = {}  # job number -> most rows decoded together with it

    def run(self, batch: list[Job]) -> None:
        self.join(batch)
        key = batch[0].batch_key
        while True:
            if self.decoder.continuous and self.scheduler.continuous:
                self.join(self.scheduler.joiners(key, self.scheduler.max_batch_size - self.decoder.rows))
            if not self.decoder.step(self.on_step):
                break
            if self.decoder.continuous:
                self.settle()
        for index, entry in enumerate(self.entries):
            self.close(index, entry)
        self.entries = []
        self.release()

    def join(self, jobs: list[Job]) -> None:
        for job in jobs:
            prompts = [row.prompt for row in job.rows]
            canvas = build_canvas(prompts, self.config.max_new_tokens, self.decoder.ids, self.decoder.device)
            self.decoder.add(canvas, [row.seed for row in job.rows])
            self.entries += [
                _Entry(
                    job,
                    row,
                    AnswerTracker(self.lm, len(row.prompt), self.config.max_new_tokens, job.stops),
                    self.decoder.calls,
                )
                for row in job.rows
            ]
            self.open_rows[job.number] = len(job.rows)
            if job not in self.scheduler.running:
                self.scheduler.running.append(job)

    def on_step(self, event: StepEvent) -> None:
        """After each model call: stream what grew, answer finished rows, drop abandoned ones."""
        self.metrics.model_calls.inc()
        rows = len(self.entries)
        self.metrics.batch_rows.observe(rows)
        changed = event.committed.any(dim=1).tolist()
        finished = event.finished.tolist() if event.finished is not None else [False] * rows
        canvas: list[list[int]] | None = None
        for index, entry in enumerate(self.entries):
            job, row, tracker = entry.job, entry.row, entry.tracker
            self.peak_rows[job.number] = max(self.peak_rows.get(job.number, 0), rows)
            if tracker.finished or entry.gone:
                continue
            if reason := self.scheduler.drop_reason(job):
                self.metrics.dropped_rows.labels(reason).inc()
                entry.gone = True
                self.decoder.drop([index])
                continue
            # a row is read when it streams, could have met a stop string, or has just ended
            if not job.denoising and not (changed[index] and (job.stream or job.stops or finished[index])):
                continue
            canvas = canvas if canvas is not None else event.canvas.tolist()
            if job.denoising:
                region = range(len(row.prompt), len(row.prompt) + self.config.max_new_tokens)
                frame = self.frames.frame(event, index, row.choice, region=region, call=event.calls - entry.joined)
                job.emit(Frame(row.choice, frame))
            delta = tracker.update(canvas[index])
            if tracker.finished:
                self.finish(entry, delta)
                self.decoder.drop([index])
            elif job.stream and delta:
                job.emit(Delta(row.choice, delta))

    def settle(self) -> None:
        """Take out the rows that are answered or dropped; answer those whose blocks ran out."""
        done = self.decoder.done()
        leaving = []
        for index, entry in enumerate(self.entries):
            if done[index]:
                self.close(index, entry)
                leaving.append(index)
        if leaving:
            self.decoder.remove(leaving)
            self.entries = [entry for index, entry in enumerate(self.entries) if index not in leaving]
            self.release()

    def release(self) -> None:
        """Jobs with no row left in the batch are done with: those not answered were dropped, and are told so."""
        decoding = {entry.job.number for entry in self.entries}
        for job in self.scheduler.running:
            if job.number in decoding:
                continue
            if not job.settled and (reason := self.scheduler.drop_reason(job)):
                job.emit(Failed(self.scheduler.dropped_error(reason)))
            self.open_rows.pop(job.number, None)
            self.peak_rows.pop(job.number, None)
        self.scheduler.running = [job for job in self.scheduler.running if job.number in decoding or not job.settled]

    def close(self, index: int, entry: _Entry) -> None:
        """The decoder is done with row `index`: answer it if its blocks ran out before its answer ended."""
        if not entry.tracker.finished and not entry.gone and self.scheduler.drop_reason(entry.job) is None:
            self.finish(entry, entry.tracker.close(self.decoder.canvas[index].tolist()))

    def finish(self, entry: _Entry, delta: str) -> None:
        job, row, tracker = entry.job, entry.row, entry.tracker
        if job.stream and delta:
            job.emit(Delta(row.choice, delta))
        assert tracker.text is not None and tracker.finish_reason is not None
        tokens = len(self.lm.encode(tracker.text)) if tracker.text else 0
        self.metrics.generated_tokens.inc(tokens)
        job.emit(Finished(row.choice, tracker.text, tracker.finish_reason, tokens))
        self.open_rows[job.number] -= 1
        if self.open_rows[job.number] == 0:
            job.emit(Done(self.decoder.calls - entry.joined, self.peak_rows[job.number]))
