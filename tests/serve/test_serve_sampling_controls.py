"""The sampling controls over HTTP (in process, a tiny model): accepted as the GenerationConfig fields they
are, answering as the library does, and refused out of range with a 400 naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from diffutron import GenerationConfig
from diffutron.lm import Diffutron
from diffutron.serve.app import ServeOptions, create_app

GREEDY = {"max_tokens": 6, "steps": 6, "block_length": 6, "temperature": 0.0}


@pytest.fixture(scope="module")
def http(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    app = create_app(lm, ServeOptions(model_id="tiny", batch_wait_ms=0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, lm


def _complete(client, **fields):
    return client.post("/v1/completions", json={"model": "tiny", "prompt": "Kitap okumak", **GREEDY, **fields})


def test_top_k_one_and_a_logit_bias_answer_as_the_library_does(http):
    client, lm = http
    greedy = GenerationConfig(max_new_tokens=6, steps=6, block_length=6, temperature=0.0)
    response = _complete(client, temperature=0.9, seed=3, top_k=1)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] == lm.generate(["Kitap okumak"], greedy, chat=False)[0]
    banned = lm.encode(lm.generate(["Kitap okumak"], greedy, chat=False)[0])[0]
    response = _complete(client, logit_bias={str(banned): -100}, presence_penalty=0.5, top_p=0.9, min_p=0.05)
    assert response.status_code == 200, response.text
    settings = response.json()["diffutron"]["settings"]
    assert settings["logit_bias"] == {str(banned): -100.0} and settings["presence_penalty"] == 0.5
    biased = greedy.replace(logit_bias={banned: -100}, presence_penalty=0.5, top_p=0.9, min_p=0.05)
    assert response.json()["choices"][0]["text"] == lm.generate(["Kitap okumak"], biased, chat=False)[0]


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"top_p": 0}, "top_p", "top_p must be in (0, 1] (1.0 disables it), got 0.0"),
        ({"min_p": 1.5}, "min_p", "min_p must be in [0, 1] (0 disables it), got 1.5"),
        ({"frequency_penalty": -2.5}, "frequency_penalty", "frequency_penalty must be in [-2, 2]"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "logit_bias[5] must be in [-100, 100], got 101.0"),
        ({"logit_bias": {"x": 1}}, "logit_bias", "logit_bias keys must be token ids (integers >= 0), got 'x'"),
    ],
)
def test_out_of_range_controls_are_a_400_naming_the_field(http, fields, param, message):
    client, _ = http
    response = _complete(client, **fields)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"].startswith(message)
