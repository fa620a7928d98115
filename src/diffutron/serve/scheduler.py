"""The model worker: one thread that takes work items from a bounded queue and runs them in batches.

A work item (`WorkItem`) is one request's share of the model's time. It says which items may
share a run (its `batch_key`) and how a batch of them is run (`run`); the worker knows nothing
else about it: the items of an endpoint live beside its serving class (`serve/serving/`).
Each item also names the LoRA adapter it runs with (None: the base model); items of different
adapters never share a batch, and the worker turns the batch's adapter on while it runs.
The worker takes the oldest waiting item and those of its key behind it, runs them, and lets
later items of the same key join a running batch from the front of the queue (`joiners`).

The worker does not speak HTTP. It reports domain outcomes on each item's event queue:
`Done` (answered), `Dropped` (timeout, client left, shutdown) and `Failed` (bad input found
late, or an internal error); `submit` raises `Refused` (queue full, shutting down). Only the
API layer (`serve/serving/base.py`) turns them into status codes.

The worker's loops check deadlines and cancellation between model calls, and long loops in the
sampler before one (`sampling/interrupt.py`) stop once nobody waits for the batch. Its
heartbeat is the time of its last progress (a model call, a batch taken or ended, an idle wait):
`/health` reports a worker that holds work without progress for `stall_s` seconds as stuck.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from diffutron.errors import DiffutronError
from diffutron.sampling.interrupt import Interrupted, interrupt_when
from diffutron.serve.metrics import Metrics

if TYPE_CHECKING:
    from diffutron.lm import Diffutron

logger = logging.getLogger("diffutron.serve")
DropReason = Literal["timeout", "client_left", "shutdown"]
_item_numbers = itertools.count()


@dataclass(frozen=True)
class Event:
    """What the worker tells a request's handler; an endpoint's work item adds its own kinds."""


@dataclass(frozen=True)
class Done(Event):
    """The item is answered (its last event)."""

    model_calls: int
    batch_rows: int  # answers decoded in the same batch, this request's included

    def summary(self) -> dict[str, int]:
        return {"model_calls": self.model_calls, "batch_rows": self.batch_rows}


@dataclass(frozen=True)
class Dropped(Event):
    """The item's work was given up before its answer (its last event)."""

    reason: DropReason


@dataclass(frozen=True)
class Failed(Event):
    """The item could not be answered (its last event): `invalid` input found late, or an `internal` error."""

    kind: Literal["invalid", "internal"]
    message: str


class Refused(Exception):
    """`submit` cannot take an item: its queue is full or the worker is stopping."""

    def __init__(self, reason: Literal["queue_full", "shutdown"], max_queue: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.max_queue = max_queue


@dataclass(eq=False, kw_only=True)
class WorkItem:
    """One request on its way through the queue and the worker; subclasses say what to run."""

    shares_batches: ClassVar[bool] = True  # False: runs alone, no wait for companions
    deadline: float  # time.monotonic() after which nobody waits for the answer
    loop: asyncio.AbstractEventLoop
    number: int = field(default_factory=lambda: next(_item_numbers))
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    cancelled: DropReason | None = None  # why the handler gave up: "client_left" or "timeout"
    settled: bool = False  # the worker sent its last event
    adapter: str | None = None  # the LoRA adapter it runs with (None: the base model)

    @property
    def size(self) -> int:
        """Rows of the batch it takes (at most the worker's max_batch_size in all)."""
        return 1

    @property
    def batch_key(self) -> Hashable:
        """Items with equal keys can be run together."""
        return (type(self), self.number)

    @property
    def companions(self) -> Hashable:
        """What items must share to run together: their batch key and their adapter."""
        return (self.adapter, self.batch_key)

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        """Run `batch` (items of one key) to the end, telling each item its events."""
        raise NotImplementedError(f"{cls.__name__} does not say how to run it")

    def emit(self, event: Event) -> None:
        if isinstance(event, (Done, Dropped, Failed)):
            self.settled = True
        if not self.loop.is_closed():  # after shutdown nobody is left to tell
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Scheduler:
    """Owns the model: a single worker thread runs batches of queued work items."""

    def __init__(
        self,
        lm: Diffutron,
        metrics: Metrics,
        *,
        max_batch_size: int,
        batch_wait_s: float,
        max_queue: int,
        continuous: bool = True,
        stall_s: float = 60.0,
    ) -> None:
        self.lm = lm
        self.continuous = continuous  # let waiting items join a running batch (where its run allows it)
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.max_queue = max_queue
        self.stall_s = stall_s
        self.pending: list[WorkItem] = []
        self.condition = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._work, name="diffutron-model-worker", daemon=True)
        self.running: list[WorkItem] = []  # the items of the batch being run, joiners included
        self.last_progress = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    @property
    def healthy(self) -> bool:
        return self.thread.is_alive() and not self.stopping and not self.stalled

    @property
    def stalled(self) -> bool:
        """The worker holds work but has made no progress for `stall_s` seconds."""
        return bool(self.running) and time.monotonic() - self.last_progress > self.stall_s

    def progressed(self) -> None:
        """The heartbeat: the worker moved on (a run calls it after each model call)."""
        self.last_progress = time.monotonic()

    def model_called(self) -> None:
        self.metrics.model_calls.inc()
        self.progressed()

    def submit(self, item: WorkItem) -> None:
        """Queue an item, or refuse it (`Refused`): the queue is full, or the worker is stopping."""
        with self.condition:
            if self.stopping or not self.thread.is_alive():
                raise Refused("shutdown", self.max_queue)
            if len(self.pending) >= self.max_queue:
                raise Refused("queue_full", self.max_queue)
            self.pending.append(item)
            self.metrics.queue_depth.set(len(self.pending))
            self.condition.notify_all()

    def withdraw(self, item: WorkItem, reason: DropReason) -> None:
        """The handler gave up on `item`: drop it from the queue, or its rows at the worker's next step."""
        item.cancelled = item.cancelled or reason
        with self.condition:
            if item in self.pending:
                self.pending.remove(item)
                self.metrics.queue_depth.set(len(self.pending))
                self.metrics.dropped_rows.labels(item.cancelled).inc(item.size)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker: the running batch is dropped at its next step, waiting items are dropped."""
        with self.condition:
            self.stopping = True
            waiting, self.pending = self.pending, []
            self.metrics.queue_depth.set(0)
            self.condition.notify_all()
        for item in waiting:
            item.emit(Dropped("shutdown"))
        self.thread.join(timeout)

    def drop_reason(self, item: WorkItem) -> DropReason | None:
        """Why an item's work should be dropped now (None: keep working on it)."""
        if self.stopping:
            return "shutdown"
        return item.cancelled or ("timeout" if time.monotonic() > item.deadline else None)

    def joiners(self, running: WorkItem, room: int) -> list[WorkItem]:
        """Waiting items that may join the running batch of `running` now (the same `companions`), up to
        `room` rows.

        Taken from the front of the queue only while they fit the batch, so that an item of another
        key is never overtaken: once one waits at the front, the batch takes no more and drains.
        """
        taken: list[WorkItem] = []
        with self.condition:
            while self.pending and not self.stopping:
                item = self.pending[0]
                if item.companions != running.companions or item.size > room:
                    break
                taken.append(self.pending.pop(0))
                room -= item.size
            if taken:
                self.metrics.queue_depth.set(len(self.pending))
        live = self._live(taken)
        self.running += live
        return live

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run(batch)

    def _run(self, batch: list[WorkItem]) -> None:
        """Run one batch; whatever happens, every item it held hears its last event."""
        self.running = list(batch)
        self.progressed()
        try:
            with interrupt_when(self._abandoned), self.lm.adapter(batch[0].adapter):
                type(batch[0]).run(batch, self)
        except Interrupted:  # nobody waits for any of it: its rows are dropped, each item is told why below
            for item in self.running:
                if not item.settled and (reason := self.drop_reason(item)):
                    self.metrics.dropped_rows.labels(reason).inc(item.size)
        except DiffutronError as error:  # inputs are checked before queueing; this is a late one
            self._settle(Failed("invalid", str(error)))
        except Exception as error:  # a failed batch must not stop the worker
            logger.exception("batch of %d requests failed", len(self.running))
            self._settle(Failed("internal", f"generation failed: {type(error).__name__}: {error}"))
        self._settle(None)
        self.running = []
        self.progressed()

    def _abandoned(self) -> bool:
        """Nobody waits for the running batch any more (checked inside long sampler loops)."""
        return all(self.drop_reason(item) for item in self.running)

    def _settle(self, failure: Failed | None) -> None:
        """Tell every running item not yet answered its end: `failure`, or why it was dropped."""
        for item in self.running:
            if item.settled:
                continue
            if failure is not None:
                item.emit(failure)
            elif reason := self.drop_reason(item):
                item.emit(Dropped(reason))
            else:
                item.emit(Failed("internal", f"{type(item).__name__} ended without an answer"))

    def _next_batch(self) -> list[WorkItem] | None:
        """The oldest waiting item and the compatible ones behind it, up to max_batch_size rows.

        Waits at most batch_wait_s for more compatible items while the batch is not full.
        None once the worker stops.
        """
        with self.condition:
            while not self.stopping and not self.pending:
                self.condition.wait()
            if self.stopping:
                return None
            batch = [self.pending.pop(0)]
            rows = batch[0].size
            window_end = time.monotonic() + self.batch_wait_s
            while batch[0].shares_batches and rows < self.max_batch_size and not self.stopping:
                for item in list(self.pending):
                    if item.companions == batch[0].companions and rows + item.size <= self.max_batch_size:
                        self.pending.remove(item)
                        batch.append(item)
                        rows += item.size
                remaining = window_end - time.monotonic()
                if rows >= self.max_batch_size or remaining <= 0:
                    break
                self.condition.wait(remaining)
            self.metrics.queue_depth.set(len(self.pending))
        return self._live(batch)

    def _live(self, items: list[WorkItem]) -> list[WorkItem]:
        """`items` less those given up (or shutting down) while they waited, which are told so."""
        live = []
        for item in items:
            if reason := self.drop_reason(item):
                self.metrics.dropped_rows.labels(reason).inc(item.size)
                item.emit(Dropped(reason))
            else:
                live.append(item)
        return live
