"""An exception inside a batch fails that batch's requests with a 500, and the server goes on."""

from __future__ import annotations

from fastapi.testclient import TestClient

import diffutron.serve.scheduler as scheduler_module
from diffutron.lm import Diffutron
from diffutron.serve.app import ServeOptions, create_app

BODY = {"model": "tiny", "messages": [{"role": "user", "content": "Kitap ne demek?"}], "max_tokens": 4,
        "temperature": 0}


def test_a_failing_batch_gets_500_and_the_next_one_is_served(tiny_model, tiny_tokenizer, monkeypatch):
    real_sample = scheduler_module.sample
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated fault in the model")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(scheduler_module, "sample", failing_once)
    app = create_app(Diffutron(tiny_model, tiny_tokenizer), ServeOptions(model_id="tiny", batch_wait_ms=0))
    with TestClient(app) as client:
        failed = client.post("/v1/chat/completions", json=BODY)
        assert failed.status_code == 500
        assert failed.json()["error"]["type"] == "server_error"
        assert "simulated fault" in failed.json()["error"]["message"]
        assert client.get("/health").status_code == 200
        served = client.post("/v1/chat/completions", json=BODY)
        assert served.status_code == 200, served.text
        assert served.json()["choices"][0]["finish_reason"] in ("stop", "length")
