"""`diffutron serve --lora NAME=PATH`: adapters trained here, served by name beside their base model."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest

from diffutron import Diffutron
from diffutron.sampling.presets import speed_config
from helpers.server import API_KEY, SERVE_COMMAND, ServerProcess
from helpers.tiny import build_tokenizer, save_checkpoint
from helpers.training_data import train_lora

BASE = "tiny"  # the base model's id on the server
QUESTION = "Türkiye'nin başkenti neresidir?"
TEXTS = ["Kitap okumak insanın ufkunu genişletir.", "Çay"]
FIELDS = {"max_tokens": 16, "temperature": 0, "extra_body": {"steps": 16, "block_length": 16}}
GREEDY = speed_config("exact", max_new_tokens=16, steps=16, block_length=16, temperature=0.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two LoRA runs of `diffutron train` on one tiny base (seeds 1 and 2): base, run directories."""
    root = tmp_path_factory.mktemp("adapters")
    base = save_checkpoint(root / "base")
    return base, {
        name: train_lora(root / name, base, build_tokenizer(), seed) for name, seed in (("first", 1), ("second", 2))
    }


@pytest.fixture(scope="module")
def adapter_server(runs):
    base, run_dirs = runs
    adapters = [option for name, run in run_dirs.items() for option in ("--lora", f"{name}={run / 'adapter'}")]
    process = ServerProcess(
        "--model", str(base), "--served-model-name", BASE, *adapters, "--api-key", API_KEY, "--batch-wait-ms", "300"
    )
    yield process
    assert process.terminate() == 0


@pytest.fixture(scope="module")
def client(adapter_server):
    return openai.OpenAI(base_url=adapter_server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def chat(client, model: str, **fields) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], **{**FIELDS, **fields}
    )


def test_models_lists_the_base_and_each_adapter(client):
    assert [(model.id, getattr(model, "parent", None)) for model in client.models.list().data] == [
        (BASE, None),
        ("first", BASE),
        ("second", BASE),
    ]
    assert client.models.retrieve("second").parent == BASE


def test_each_adapter_answers_as_its_merged_model(client, runs):
    base, run_dirs = runs
    answers = {}
    for name, run in run_dirs.items():
        merged = Diffutron.from_pretrained(run / "final", device="cpu", dtype="float32")  # merged by the run
        answer = chat(client, name)
        assert answer.model == name
        answers[name] = answer.choices[0].message.content
        assert answers[name] == merged.chat(QUESTION, GREEDY)
        embedded = client.embeddings.create(model=name, input=TEXTS, encoding_format="float")
        np.testing.assert_allclose([item.embedding for item in embedded.data], merged.embed(TEXTS).numpy(), atol=1e-5)
    assert answers["first"] != answers["second"]
    plain = Diffutron.from_pretrained(base, device="cpu", dtype="float32")
    assert chat(client, BASE).choices[0].message.content == plain.chat(QUESTION, GREEDY)


def test_requests_for_different_adapters_never_share_a_batch(client):
    long = {"max_tokens": 64, "extra_body": {"steps": 64, "block_length": 64}}
    alone = {name: chat(client, name, **long).choices[0].message.content for name in ("first", "second")}
    with ThreadPoolExecutor(3) as pool:  # sent together: only the two of one adapter are decoded together
        answers = list(pool.map(lambda name: chat(client, name, **long), ["first", "second", "first"]))
    rows = [answer.model_extra["diffutron"]["batch_rows"] for answer in answers]
    assert rows == [2, 1, 2]
    assert [answer.choices[0].message.content for answer in answers] == [
        alone["first"],
        alone["second"],
        alone["first"],
    ]


def test_an_unknown_adapter_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        chat(client, "third")
    assert raised.value.code == "model_not_found"
    assert (
        raised.value.body["message"] == "model 'third' is not served here; this server serves 'tiny', 'first', 'second'"
    )


def serve_fails(*options: str) -> str:
    """The output of a server that refuses to start, after checking its exit status 2 and one-line error."""
    result = subprocess.run(
        [*SERVE_COMMAND, "--port", "0", *options], capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


def test_an_adapter_of_another_base_is_refused_at_start_up(runs, tmp_path):
    _, run_dirs = runs
    other = save_checkpoint(tmp_path / "wide", hidden_size=48)
    error = serve_fails("--model", str(other), "--lora", f"first={run_dirs['first'] / 'adapter'}")
    assert f"the adapter {run_dirs['first'] / 'adapter'} does not fit the base model {other} (size mismatch" in error


def test_adapter_names_are_each_a_model_id_of_their_own(runs):
    base, run_dirs = runs
    adapter = run_dirs["first"] / "adapter"
    error = serve_fails("--model", str(base), "--lora", f"first={adapter}", "--lora", f"first={adapter}")
    assert (
        error == f"error: --lora first={adapter}: the name 'first' is another adapter's; give each adapter its own name"
    )
