"""The small Turkish model shipped inside the package: loads offline, answers, infills."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from diffutron import Diffutron, GenerationConfig
from diffutron.cli import app
from diffutron.model.chat import render_chat
from diffutron.model.loading import default_model_path
from diffutron.sampling.sampler import sample

TURKISH = re.compile(r"[A-Za-zÇĞİÖŞÜçğıöşüÂÎÛâîû]+")
SHIPPED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "loss.png")


@pytest.fixture(scope="module")
def embedded():
    return Diffutron.from_pretrained(device="cpu")  # HF_HUB_OFFLINE=1 (tests/conftest.py): nothing is fetched


def turkish_words(text: str) -> list[str]:
    return TURKISH.findall(text)


def test_the_package_ships_the_default_model():
    path = default_model_path()
    assert path is not None, "src/diffutron/assets/default/config.json is missing"
    for name in SHIPPED:
        assert (path / name).is_file(), name
    assert (path / "model.safetensors").stat().st_size <= 25 * 2**20


def test_loads_offline_as_a_modernbert_masked_lm(embedded):
    assert type(embedded.model).__name__ == "ModernBertForMaskedLM"
    assert embedded.tokenizer.mask_token == "<mask>" and embedded.context_length >= 128


def test_answers_a_dictionary_question_in_turkish(embedded):
    # the model card's sampler, seeded, run to the end of the canvas (early stop leaves masks after the answer)
    config = GenerationConfig(seed=0, early_stop=False)
    prompt = embedded.encode(render_chat("«kitap» ne demek?"))
    canvas = sample(embedded.model, embedded.tokenizer, [prompt], config)
    assert not (canvas == embedded.special.mask).any(), "mask tokens left on the canvas"
    answer = embedded.answer(canvas[0].tolist(), len(prompt))
    words = turkish_words(answer)
    assert len(words) >= 2, answer
    assert "".join(words) == re.sub(r"[^\w]|\d|_", "", answer), f"non-Turkish letters in {answer!r}"
    assert "mask" not in answer.lower() and "[/Answer]" not in answer
    assert embedded.chat("«kitap» ne demek?", config) == answer


def test_infills_a_masked_word(embedded):
    text = embedded.infill("Çocuklar bahçede [MASK] oynuyor.", GenerationConfig(seed=0))
    assert text.startswith("Çocuklar bahçede") and text.endswith("oynuyor.")
    filled = text.removeprefix("Çocuklar bahçede").removesuffix("oynuyor.").strip()
    assert turkish_words(filled) and "mask" not in filled.lower()


def test_is_every_commands_default():
    result = CliRunner().invoke(app, ["generate", "«çay» ne demek?", "--seed", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert turkish_words(result.output)
    info = CliRunner().invoke(app, ["info", "--json", "--device", "cpu"])
    assert info.exit_code == 0 and "ModernBertForMaskedLM" in info.output


def test_logits_are_finite_in_float32(embedded):
    ids = torch.tensor([embedded.encode("Kitap okumak güzeldir.")])
    with torch.no_grad():
        assert torch.isfinite(embedded.model(input_ids=ids).logits).all()


def test_the_readme_sample_table_reproduces_in_any_batch_size():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in readme.splitlines() if line.startswith("| «")]
    assert len(rows) == 6
    prompts = [prompt.removeprefix("| ") for prompt, _ in rows]
    expected = [answer.removesuffix(" |") for _, answer in rows]
    for batch_size in ("6", "4"):
        result = CliRunner().invoke(
            app, ["generate", *prompts, "--seed", "0", "--device", "cpu", "--batch-size", batch_size]
        )
        assert result.exit_code == 0, result.output
        answers = [line for line in result.output.splitlines() if line.strip() and line not in prompts]
        assert answers == expected
