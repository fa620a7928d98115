"""The Python API beside chat and generate: filling in the middle, embeddings, tokenize and detokenize."""

from __future__ import annotations

import pytest
import torch
from tokenizers import processors

from diffutron import Diffutron, DiffutronError, GenerationConfig
from diffutron.model.chat import render_chat
from diffutron.model.embeddings import embed_ids
from helpers.steered import ForcedTokens
from helpers.tiny import build_tokenizer

GREEDY = GenerationConfig(max_new_tokens=8, steps=8, block_length=8, temperature=0.0)


@pytest.fixture(scope="module")
def lm(tiny_model, tiny_tokenizer):
    return Diffutron(tiny_model, tiny_tokenizer)


# --- fill in the middle ----------------------------------------------------------------------------


def test_the_middle_ends_at_its_first_padding_token(tiny_model, tiny_tokenizer):
    plain = Diffutron(tiny_model, tiny_tokenizer)
    prompt, suffix = plain.encode("Kitap okumak"), plain.encode(" Çay bugün")
    eos = tiny_tokenizer.eos_token_id
    forced = Diffutron(ForcedTokens(tiny_model, {(0, len(prompt) + 3): eos}), tiny_tokenizer)
    events = []
    config = GREEDY.replace(early_stop=False)
    (middle,) = forced.generate(["Kitap okumak"], config, chat=False, suffix=" Çay bugün", callback=events.append)
    canvas = events[-1].canvas[0].tolist()
    assert canvas[: len(prompt)] == prompt and canvas[len(prompt) + 8 :] == suffix  # prompt, 8 masks, suffix
    assert canvas[len(prompt) + 3] == eos
    assert middle == tiny_tokenizer.decode(canvas[len(prompt) : len(prompt) + 3]).strip()  # 3 tokens of 8
    (whole,) = plain.generate(["Kitap okumak"], config, chat=False, suffix=" Çay bugün")
    assert len(plain.encode(whole)) >= 6  # without a padding token the middle is as long as asked


def test_a_suffix_is_text_after_raw_text_and_counts_against_the_context(lm):
    with pytest.raises(DiffutronError, match="with chat=False"):
        lm.generate(["Kitap"], GREEDY, suffix="Çay")
    with pytest.raises(DiffutronError, match="the suffix contains the mask token"):
        lm.generate(["Kitap"], GREEDY, chat=False, suffix="Çay <mask>")
    long_suffix = "Kitap okumak güzel. " * 120
    with pytest.raises(DiffutronError, match=r"max_new_tokens=8 and a suffix of \d+ tokens .* context of 512"):
        lm.generate(["Kitap okumak güzel. " * 30], GREEDY, chat=False, suffix=long_suffix)


# --- embeddings ------------------------------------------------------------------------------------


def test_embeddings_of_a_batch_equal_one_by_one_and_are_unit_vectors(lm):
    texts = ["Kitap okumak insanın ufkunu genişletir.", "Çay", "Bugün hava çok güzel, parka gidelim."]
    batch = lm.embed(texts)
    assert batch.shape == (3, lm.model.config.hidden_size) and batch.dtype == torch.float32
    alone = torch.cat([lm.embed(text) for text in texts])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(lm.embed([lm.encode(texts[1])]), alone[1:2])  # token ids: the same input
    torch.testing.assert_close(lm.embed(lm.encode(texts[1])), alone[1:2])
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def test_embeddings_are_made_in_passes_of_similar_lengths_whatever_the_pass_size(lm):
    inputs = [lm.encode(text) for text in ["Kitap okumak", "Çay", "Bugün hava çok güzel", "Güneş doğudan doğar"]]
    passes = []
    vectors = embed_ids(lm.model, inputs, lm.special.pad, batch_size=3, after_pass=lambda: passes.append(1))
    assert len(passes) == 2  # 4 inputs, 3 a pass (the server's heartbeat after each)
    torch.testing.assert_close(vectors, lm.embed(inputs), atol=1e-5, rtol=1e-5)


def test_the_embedding_is_the_mean_of_the_encoders_last_hidden_states(lm):
    ids = lm.encode("Kitap okumak")
    with torch.no_grad():
        hidden = lm.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    mean = hidden.mean(dim=0)
    torch.testing.assert_close(lm.embed(ids)[0], mean / mean.norm())


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "embed takes a text"),
        ([""], "input 0 is empty"),
        ([[5] * 513], "input 0 has 513 tokens, more than the model's context of 512"),
        ([[5, 300]], "input 0 holds a token id outside the vocabulary of 300"),
        (["Çay", [5]], "not a mix of them"),
    ],
)
def test_bad_embedding_inputs_are_refused(lm, inputs, message):
    with pytest.raises(DiffutronError, match=message):
        lm.embed(inputs)


def test_an_input_as_long_as_the_context_is_embedded(lm):
    assert lm.embed([[5] * 512]).shape == (1, lm.model.config.hidden_size)


# --- tokenize, detokenize --------------------------------------------------------------------------


def test_tokenize_with_and_without_the_chat_format(lm):
    raw = lm.tokenize("Merhaba dünya")
    assert raw.tokens == lm.encode("Merhaba dünya") and raw.count == len(raw.tokens)
    assert raw.to_dict() == {"count": raw.count, "max_model_len": 512, "tokens": raw.tokens}
    chat = lm.tokenize("Merhaba dünya", chat=True, token_strs=True)
    assert chat.tokens == lm.encode(render_chat("Merhaba dünya"))
    assert chat.to_dict()["token_strs"] == lm.tokenizer.convert_ids_to_tokens(chat.tokens)
    assert lm.tokenize([{"role": "user", "content": "Merhaba dünya"}]).tokens == chat.tokens
    assert lm.detokenize(chat.tokens) == render_chat("Merhaba dünya")


def test_tokenize_adds_the_tokenizers_special_tokens_when_asked(tiny_model):
    tokenizer = build_tokenizer()
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", tokenizer.bos_token_id), ("<eos>", tokenizer.eos_token_id)]
    )
    lm = Diffutron(tiny_model, tokenizer)
    plain = lm.tokenize("Kitap").tokens
    assert lm.tokenize("Kitap", add_special_tokens=True).tokens == [
        tokenizer.bos_token_id,
        *plain,
        tokenizer.eos_token_id,
    ]
    assert lm.detokenize([tokenizer.bos_token_id, *plain]) == "<bos>Kitap"  # special tokens kept


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([1, 300], r"tokens\[1\] must be a token id from 0 to 299"),
        ("ab", "list of token ids"),
        ([True], r"tokens\[0\]"),
    ],
)
def test_detokenize_refuses_what_is_not_a_token_id(lm, tokens, message):
    with pytest.raises(DiffutronError, match=message):
        lm.detokenize(tokens)
