"""The worker runs any kind of work item and reports domain outcomes; only the API layer maps them to HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import pytest

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.interrupt import CHECK_EVERY, Interrupted, checkpoint, interrupt_when
from diffutron.sampling.schedule import stochastic_draws, transfer_counts
from diffutron.serve.metrics import Metrics
from diffutron.serve.scheduler import Done, Dropped, Event, Failed, Refused, Scheduler, WorkItem
from diffutron.serve.serving.base import outcome_error, refused_error
from diffutron.serve.serving.decoding import GenerationWork, Row

RUNS: list[list[str]] = []  # the batches the worker ran, by item name


@dataclass(eq=False, kw_only=True)
class NamedWork(WorkItem):
    """A kind of work the worker has never heard of: items of one group run together."""

    name: str
    group: str
    rows: int = 1
    fails_with: Exception | None = None

    @property
    def size(self) -> int:
        return self.rows

    @property
    def batch_key(self) -> Hashable:
        return (NamedWork, self.group)

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        items = [item for item in batch if isinstance(item, NamedWork)]
        RUNS.append([item.name for item in items])
        if items[0].fails_with is not None:
            raise items[0].fails_with
        for item in items:
            item.emit(Done(model_calls=0, batch_rows=sum(each.rows for each in items)))


def run_items(lm: Diffutron, specs: list[dict], **options) -> list[Event]:
    """Queue `specs` as NamedWork before the worker starts; each item's last event."""
    scheduler = Scheduler(lm, Metrics(), **{"max_batch_size": 4, "batch_wait_s": 0.05, "max_queue": 8, **options})

    async def scenario() -> list[Event]:
        loop = asyncio.get_running_loop()
        items = [NamedWork(deadline=time.monotonic() + 30, loop=loop, **spec) for spec in specs]
        scheduler.pending = list(items)
        scheduler.start()
        events = [await asyncio.wait_for(item.events.get(), 10) for item in items]
        await asyncio.to_thread(scheduler.stop)
        await asyncio.sleep(0.05)  # anything the worker sent after an item's last event would be here now
        assert [item.events.qsize() for item in items] == [0] * len(items)
        return events

    RUNS.clear()
    return asyncio.run(scenario())


def test_items_of_a_new_kind_run_in_batches_by_key(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    specs = [
        {"name": "a1", "group": "a"},
        {"name": "b1", "group": "b"},
        {"name": "a2", "group": "a", "rows": 2},
        {"name": "a3", "group": "a", "rows": 2},  # would make 5 rows with a1 and a2: waits for the next batch
        {"name": "a4", "group": "a"},
    ]
    events = run_items(lm, specs)
    assert RUNS == [["a1", "a2", "a4"], ["b1"], ["a3"]]
    assert events == [Done(0, 4), Done(0, 1), Done(0, 4), Done(0, 2), Done(0, 4)]


@pytest.mark.parametrize(
    "error, outcome, status",
    [
        (DiffutronError("steps must be >= 1"), Failed("invalid", "steps must be >= 1"), 400),
        (RuntimeError("boom"), Failed("internal", "generation failed: RuntimeError: boom"), 500),
    ],
    ids=["late bad input", "internal error"],
)
def test_a_failing_run_is_a_failed_outcome_and_the_worker_goes_on(tiny_model, tiny_tokenizer, error, outcome, status):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    specs = [
        {"name": "x", "group": "bad", "fails_with": error},
        {"name": "y", "group": "bad"},  # shares the failing run
        {"name": "z", "group": "good"},
    ]
    events = run_items(lm, specs)
    assert RUNS == [["x", "y"], ["z"]]
    assert events == [outcome, outcome, Done(0, 1)]
    assert outcome_error(events[0]).status == status and outcome_error(events[0]).message == outcome.message


@pytest.mark.parametrize(
    "reason, status, code, message",
    [
        ("timeout", 504, "timeout", "the request was dropped (timeout)"),
        ("client_left", 504, "client_left", "the request was dropped (client left)"),
        ("shutdown", 503, None, "the server is shutting down: retry elsewhere"),
    ],
)
def test_dropped_outcomes_as_http(reason, status, code, message):
    error = outcome_error(Dropped(reason))
    assert (error.status, error.code, error.message) == (status, code, message)


def test_refusals_as_http(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    scheduler = Scheduler(lm, Metrics(), max_batch_size=4, batch_wait_s=0, max_queue=1)
    loop = asyncio.new_event_loop()
    try:
        item = NamedWork(name="a", group="a", deadline=time.monotonic() + 30, loop=loop)
        with pytest.raises(Refused) as stopped:  # the worker never started
            scheduler.submit(item)
        assert stopped.value.reason == "shutdown" and refused_error(stopped.value).status == 503
        scheduler.thread.is_alive = lambda: True  # type: ignore[method-assign]  # as if it ran, without running
        scheduler.submit(item)
        assert scheduler.metrics.registry.get_sample_value("diffutron_queue_depth") == 1
        with pytest.raises(Refused) as full:
            scheduler.submit(NamedWork(name="b", group="a", deadline=time.monotonic() + 30, loop=loop))
        error = refused_error(full.value)
        assert full.value.reason == "queue_full" and (error.status, error.code) == (429, "queue_full")
        assert error.headers == {"Retry-After": "1"} and "(1 requests waiting)" in error.message
    finally:
        loop.close()


def test_a_worker_holding_work_without_progress_is_stalled(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    scheduler = Scheduler(lm, Metrics(), max_batch_size=4, batch_wait_s=0, max_queue=1, stall_s=5)
    loop = asyncio.new_event_loop()
    try:
        scheduler.last_progress = time.monotonic() - 6
        assert not scheduler.stalled  # idle: nothing to make progress on
        scheduler.running = [NamedWork(name="a", group="a", deadline=time.monotonic() + 30, loop=loop)]
        assert scheduler.stalled
        scheduler.last_progress = time.monotonic() - 4
        assert not scheduler.stalled  # busy, within the bound
        scheduler.last_progress = time.monotonic() - 6
        scheduler.model_called()  # a model call is progress
        assert not scheduler.stalled
        assert scheduler.metrics.registry.get_sample_value("diffutron_model_calls_total") == 1
    finally:
        loop.close()


def test_checkpoints_interrupt_only_inside_an_interruptible_block():
    checkpoint()  # outside: nothing to interrupt
    given_up = False
    with interrupt_when(lambda: given_up):
        checkpoint()
        given_up = True
        checkpoint(1)  # between checks
        checkpoint(CHECK_EVERY - 1)
        with pytest.raises(Interrupted):
            checkpoint(CHECK_EVERY)
        with pytest.raises(Interrupted):
            checkpoint()
    checkpoint()  # the block is over


def test_an_interruptible_block_belongs_to_its_thread():
    """The worker's condition must not interrupt the sampler of another thread (the CLI's, a test's)."""
    outcomes: list[str] = []

    def elsewhere() -> None:
        try:
            checkpoint()
            outcomes.append("ran")
        except Interrupted:
            outcomes.append("interrupted")

    with interrupt_when(lambda: True):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert outcomes == ["ran"]


@pytest.mark.parametrize("schedule", [transfer_counts, stochastic_draws], ids=["counts", "stochastic draws"])
def test_a_schedule_of_a_billion_steps_is_interrupted(schedule):
    checks = []

    def given_up() -> bool:
        checks.append(1)
        return len(checks) == 3

    started = time.monotonic()
    with interrupt_when(given_up), pytest.raises(Interrupted):
        schedule(4, 10**9)
    assert len(checks) == 3 and time.monotonic() - started < 30


def test_a_generation_given_up_in_its_step_schedule_is_dropped(tiny_model, tiny_tokenizer):
    """A request of a billion steps loops in Python before its first model call: its timeout still ends it.

    `GenerationConfig` caps steps well below that; the worker's guard is tested past the cap all the same."""
    lm = Diffutron(tiny_model, tiny_tokenizer)
    billion_steps = GenerationConfig(max_new_tokens=4)
    object.__setattr__(billion_steps, "steps", 10**9)  # past the cap, which the constructor would refuse
    metrics = Metrics()
    scheduler = Scheduler(lm, metrics, max_batch_size=4, batch_wait_s=0, max_queue=4)

    async def scenario() -> tuple[Event, Event]:
        loop = asyncio.get_running_loop()
        rows = [Row(lm.encode("Kitap ne demek?"), seed, seed) for seed in range(2)]
        huge = GenerationWork(
            rows=rows,
            config=billion_steps,
            deadline=time.monotonic() + 0.5,
            loop=loop,
        )
        after = GenerationWork(
            rows=rows[:1], config=GenerationConfig(max_new_tokens=4), deadline=time.monotonic() + 60, loop=loop
        )
        scheduler.start()
        scheduler.submit(huge)
        scheduler.submit(after)
        try:
            dropped = await asyncio.wait_for(huge.events.get(), 30)
            answered = await asyncio.wait_for(_last(after), 30)
        finally:
            await asyncio.to_thread(scheduler.stop)
        return dropped, answered

    dropped, answered = asyncio.run(scenario())
    assert dropped == Dropped("timeout") and isinstance(answered, Done)
    assert metrics.registry.get_sample_value("diffutron_dropped_rows_total", {"reason": "timeout"}) == 2
    assert metrics.registry.get_sample_value("diffutron_model_calls_total") == answered.model_calls


async def _last(item: WorkItem) -> Event:
    while not isinstance(event := await item.events.get(), (Done, Dropped, Failed)):
        pass
    return event


def test_the_defaults_of_a_work_item(tiny_model, tiny_tokenizer):
    """An item that says nothing takes one row, shares no batch, and its run is an internal failure."""
    lm = Diffutron(tiny_model, tiny_tokenizer)
    metrics = Metrics()
    scheduler = Scheduler(lm, metrics, max_batch_size=4, batch_wait_s=0, max_queue=4)

    async def scenario() -> tuple[WorkItem, WorkItem, Event]:
        loop = asyncio.get_running_loop()
        first, second = (WorkItem(deadline=time.monotonic() + 30, loop=loop) for _ in range(2))
        assert first.size == 1 and first.batch_key == (WorkItem, first.number) != second.batch_key
        scheduler.pending = [first, second]
        scheduler.withdraw(second, "client_left")
        scheduler.start()
        event = await asyncio.wait_for(first.events.get(), 10)
        await asyncio.to_thread(scheduler.stop)
        return first, second, event

    first, second, event = asyncio.run(scenario())
    assert event == Failed("internal", "generation failed: NotImplementedError: WorkItem does not say how to run it")
    assert first.settled and not second.settled and second.cancelled == "client_left"
    assert metrics.registry.get_sample_value("diffutron_dropped_rows_total", {"reason": "client_left"}) == 1
