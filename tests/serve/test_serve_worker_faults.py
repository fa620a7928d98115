"""Faults inside the worker: a failing batch gets a 500 and the server goes on; requests given up early."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

import diffutron.serve.serving.decoding as decoding_module
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.serve.app import ServeOptions, create_app
from diffutron.serve.metrics import Metrics
from diffutron.serve.scheduler import Dropped, Scheduler
from diffutron.serve.serving.base import outcome_error
from diffutron.serve.serving.decoding import GenerationWork, Row

BODY = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Kitap ne demek?"}],
    "max_tokens": 4,
    "temperature": 0,
}


def test_a_failing_batch_gets_500_and_the_next_one_is_served(tiny_model, tiny_tokenizer, monkeypatch):
    real_step = decoding_module.Decoder.step
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated fault in the model")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(decoding_module.Decoder, "step", failing_once)
    app = create_app(Diffutron(tiny_model, tiny_tokenizer), ServeOptions(model_id="tiny", batch_wait_ms=0))
    with TestClient(app, base_url="http://127.0.0.1") as client:  # the Host must name the server
        failed = client.post("/v1/chat/completions", json=BODY)
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error"
        assert "simulated fault" in failed.json()["error"]["message"]
        assert client.get("/health").status_code == 200
        served = client.post("/v1/chat/completions", json=BODY)
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("give_up", ["client_left", "shutdown"])
def test_a_request_given_up_while_its_batch_fills_is_dropped_and_answered(tiny_model, tiny_tokenizer, give_up):
    """The worker holds a request while it waits for companions; leaving or stopping then is still a drop."""
    lm = Diffutron(tiny_model, tiny_tokenizer)
    metrics = Metrics()
    scheduler = Scheduler(lm, metrics, max_batch_size=4, batch_wait_s=0.5, max_queue=4)

    async def scenario() -> Dropped:
        job = GenerationWork(
            rows=[Row(lm.encode("Kitap ne demek?"), 0, 0)],
            config=GenerationConfig(max_new_tokens=4),
            deadline=time.monotonic() + 30,
            loop=asyncio.get_running_loop(),
        )
        scheduler.start()
        scheduler.submit(job)
        while scheduler.pending:  # taken by the worker, which now waits for more requests
            await asyncio.sleep(0.01)
        if give_up == "client_left":
            scheduler.withdraw(job, "client_left")
        else:
            await asyncio.to_thread(scheduler.stop)
        event = await asyncio.wait_for(job.events.get(), 10)
        scheduler.stop()
        return event

    event = asyncio.run(scenario())
    assert isinstance(event, Dropped) and event.reason == give_up
    assert outcome_error(event).status == (504 if give_up == "client_left" else 503)
    assert metrics.registry.get_sample_value("diffutron_dropped_rows_total", {"reason": give_up}) == 1


def test_a_request_past_its_timeout_gets_504_and_its_row_is_dropped(tiny_model, tiny_tokenizer, monkeypatch):
    real_step = decoding_module.Decoder.step

    def slow_step(*args, **kwargs):
        time.sleep(0.2)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(decoding_module.Decoder, "step", slow_step)
    options = ServeOptions(model_id="tiny", batch_wait_ms=0, request_timeout=0.5)
    app = create_app(Diffutron(tiny_model, tiny_tokenizer), options)
    with TestClient(app, base_url="http://127.0.0.1") as client:  # the Host must name the server
        started = time.monotonic()
        late = client.post("/v1/chat/completions", json={**BODY, "max_tokens": 32, "steps": 32})
        assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
        assert 0.5 <= time.monotonic() - started < 5
        assert late.json()["error"]["message"] == (
            "no answer within the request timeout (0.5 s): ask for fewer tokens or retry later"
        )
        deadline = time.monotonic() + 10
        while 'diffutron_dropped_rows_total{reason="timeout"} 1.0' not in client.get("/metrics").text:
            assert time.monotonic() < deadline, "the timed-out row was not dropped"
            time.sleep(0.05)
