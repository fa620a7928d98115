"""Which waiting requests join a running batch: only those at the front of the queue with its settings."""

from __future__ import annotations

import asyncio
import time

from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.serve.metrics import Metrics
from diffutron.serve.scheduler import Scheduler
from diffutron.serve.serving.decoding import GenerationWork, Row

SHORT, LONG = GenerationConfig(max_new_tokens=4), GenerationConfig(max_new_tokens=8)


def test_joiners_come_from_the_front_of_the_queue_and_fit_the_batch(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    scheduler = Scheduler(lm, Metrics(), max_batch_size=8, batch_wait_s=0, max_queue=8)
    loop = asyncio.new_event_loop()
    try:

        def job(config: GenerationConfig, rows: int) -> GenerationWork:
            prompt = lm.encode("Kitap ne demek?")
            rows_ = [Row(prompt, 0, n) for n in range(rows)]
            return GenerationWork(rows=rows_, config=config, deadline=time.monotonic() + 60, loop=loop)

        first, second, other, behind = job(SHORT, 1), job(SHORT, 2), job(LONG, 1), job(SHORT, 1)
        scheduler.pending = [first, second, other, behind]
        assert scheduler.joiners(first, room=2) == [first]  # the second does not fit with it
        assert scheduler.joiners(first, room=5) == [second]  # then a job of other settings is at the front
        assert scheduler.joiners(first, room=5) == []  # and the one behind it may not overtake it
        assert scheduler.pending == [other, behind]
        assert scheduler.joiners(other, room=1) == [other]
        scheduler.withdraw(behind, "client_left")
        assert scheduler.joiners(first, room=1) == [] and scheduler.pending == []  # withdrawn: nothing to join
    finally:
        loop.close()


def test_items_of_different_adapters_never_share_a_batch(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    scheduler = Scheduler(lm, Metrics(), max_batch_size=8, batch_wait_s=0, max_queue=8)
    loop = asyncio.new_event_loop()
    try:

        def job(adapter: str | None) -> GenerationWork:
            rows = [Row(lm.encode("Kitap ne demek?"), 0, 0)]
            return GenerationWork(rows=rows, config=SHORT, deadline=time.monotonic() + 60, loop=loop, adapter=adapter)

        base, legal, base_too, legal_too = job(None), job("legal"), job(None), job("legal")
        assert base.batch_key == legal.batch_key and base.companions != legal.companions
        scheduler.pending = [base, legal, base_too, legal_too]
        assert scheduler._next_batch() == [base, base_too]  # the same settings, but not the same adapter
        assert scheduler.joiners(base, room=8) == []  # nor does an item of another adapter join it
        assert scheduler._next_batch() == [legal, legal_too]
    finally:
        loop.close()
