"""Training the Turkish tokenizer on a little text: loadable, byte fallback, chat tags, NFC."""

from __future__ import annotations

import unicodedata

import pytest
from helpers.tiny import TURKISH_TEXT
from transformers import AutoTokenizer

from diffutron.data.tokenizer_training import BYTE_TOKENS, CHAT_TAGS, fertility, train_tokenizer
from diffutron.errors import DiffutronError
from diffutron.model.chat import render_chat
from diffutron.model.tokens import SpecialIds

TEXTS = [line for line in TURKISH_TEXT.splitlines() if line and not line.startswith("[")] * 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer") / "tok"
    train_tokenizer(TEXTS, directory, vocab_size=700, min_frequency=1, alphabet_size=60)
    return AutoTokenizer.from_pretrained(directory)


def test_autotokenizer_loads_it_with_the_special_tokens(trained):
    assert 300 < len(trained) <= 700  # a little text runs out of merges before the target size
    assert [trained.pad_token, trained.eos_token, trained.bos_token, trained.unk_token, trained.mask_token] == [
        "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    ]
    assert SpecialIds.from_tokenizer(trained) == SpecialIds(mask=4, eos=1, pad=0)
    assert trained("kitap okumak", add_special_tokens=True)["input_ids"] == trained("kitap okumak", add_special_tokens=False)["input_ids"]


def test_chat_tags_are_one_token_each_and_the_prompt_is_a_prefix(trained):
    prompt = render_chat("«kitap» ne demek?")
    full = render_chat([{"role": "user", "content": "«kitap» ne demek?"}, {"role": "assistant", "content": "Bir eser."}])
    prompt_ids = trained(prompt, add_special_tokens=False)["input_ids"]
    full_ids = trained(full, add_special_tokens=False)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    tokens = trained.convert_ids_to_tokens(full_ids)
    for tag in ("[Question]", "[/Question]", "[Answer]", "[/Answer]"):
        assert tokens.count(tag) == 1
    assert set(CHAT_TAGS) <= set(trained.get_vocab())
    assert trained.decode(full_ids) == full


def test_byte_fallback_round_trips_unseen_characters_without_unk(trained):
    text = "Çay 🍵 ve 漢字, ₺42"
    ids = trained(text, add_special_tokens=False)["input_ids"]
    assert trained.unk_token_id not in ids
    assert set(trained.convert_ids_to_tokens(ids)) & set(BYTE_TOKENS)
    assert trained.decode(ids) == text


def test_nfc_normalisation_makes_decomposed_text_tokenize_the_same(trained):
    composed = "Öğrenciler düzenli çalışmalı."
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert trained(decomposed)["input_ids"] == trained(composed)["input_ids"]


def test_fertility_counts_tokens_per_word(trained):
    report = fertility(trained, ["kitap okumak", "çay"])
    assert report["words"] == 3 and report["tokens"] >= 3
    assert report["tokens_per_word"] == report["tokens"] / 3
    with pytest.raises(DiffutronError, match="no text"):
        fertility(trained, [])


def test_too_small_vocabulary_is_refused(tmp_path):
    with pytest.raises(DiffutronError, match="vocab_size must be at least"):
        train_tokenizer(TEXTS, tmp_path / "t", vocab_size=300)
