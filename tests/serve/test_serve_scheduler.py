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
        key = first.batch_key
        assert scheduler.joiners(key, room=2) == [first]  # the second does not fit with it
        assert scheduler.joiners(key, room=5) == [second]  # then a job of other settings is at the front
        assert scheduler.joiners(key, room=5) == []  # and the one behind it may not overtake it
        assert scheduler.pending == [other, behind]
        assert scheduler.joiners(other.batch_key, room=1) == [other]
        scheduler.withdraw(behind, "client_left")
        assert scheduler.joiners(key, room=1) == [] and scheduler.pending == []  # withdrawn: nothing to join
    finally:
        loop.close()
