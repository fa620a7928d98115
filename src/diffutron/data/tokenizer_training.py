"""A Turkish BPE tokenizer with byte fallback for a new model, trained on any iterable of texts.

Design choices, and why:
- NFC normalisation and no lower-casing: Turkish case (I/ı, İ/i) carries meaning.
- Pre-tokenisation keeps a leading space on words, splits digits one by one and isolates
  punctuation and whitespace runs, so a newline or a bracket never merges with a word.
- Byte fallback: 256 `<0xNN>` tokens are part of the vocabulary, so any text (emoji, other
  scripts) round-trips without `<unk>`, while the BPE alphabet stays small.
- The chat tags of the Diffutron format (`[Question]`, `[/Answer]`, ...) are added as
  non-special tokens: the chat is still rendered as plain text and tokenised without special
  tokens, but each tag is exactly one token whatever text surrounds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from diffutron.model.tokens import encode_text
from diffutron.errors import DiffutronError
from diffutron.files import atomic_directory, check_destination
from diffutron.model.chat import CHAT_TAGS

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "eos_token": "<eos>",
    "bos_token": "<bos>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}
BYTE_TOKENS = [f"<0x{value:02X}>" for value in range(256)]
PRE_TOKENIZER_PATTERN = r" ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+"


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    vocab_size: int = 12000,
    min_frequency: int = 2,
    alphabet_size: int = 160,
    model_max_length: int = 256,
    overwrite: bool = False,
) -> PreTrainedTokenizerFast:
    """Train on `texts` and save tokenizer.json + tokenizer_config.json in `out_dir`."""
    base = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + len(CHAT_TAGS)
    if vocab_size < base + alphabet_size:
        raise DiffutronError(f"vocab_size must be at least {base + alphabet_size}, got {vocab_size}")
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite=overwrite)
    trained = _bare_tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(BYTE_TOKENS) - len(CHAT_TAGS),
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
        limit_alphabet=alphabet_size,
        show_progress=False,
    )
    trained.train_from_iterator(texts, trainer=trainer)
    tokenizer = _with_byte_fallback(trained)
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in CHAT_TAGS])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    with atomic_directory(out_dir, overwrite=overwrite) as temporary:
        wrapped.save_pretrained(temporary)
    return wrapped


def _bare_tokenizer(model: models.Model) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return tokenizer


def _with_byte_fallback(trained: Tokenizer) -> Tokenizer:
    """The trained vocabulary with the 256 byte tokens placed right after the special tokens."""
    state = json.loads(trained.model.__getstate__())  # {"vocab": {...}, "merges": [...], ...}
    ordered = sorted(state["vocab"].items(), key=lambda item: item[1])
    specials = [token for token, _ in ordered[: len(SPECIAL_TOKENS)]]
    learned = [token for token, _ in ordered[len(SPECIAL_TOKENS) :] if token not in BYTE_TOKENS]
    vocab = {token: index for index, token in enumerate([*specials, *BYTE_TOKENS, *learned])}
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ", 1)) for merge in state["merges"]]
    tokenizer = _bare_tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=SPECIAL_TOKENS["unk_token"], byte_fallback=True)
    )
    tokenizer.add_special_tokens(specials)
    return tokenizer


def fertility(tokenizer: PreTrainedTokenizerFast, texts: Iterable[str]) -> dict[str, float]:
    """Tokens per whitespace-separated word, and the share of text that needed byte fallback."""
    words = tokens = byte_tokens = 0
    byte_ids = set(tokenizer.convert_tokens_to_ids(BYTE_TOKENS))
    for text in texts:
        ids = encode_text(tokenizer, text)
        words += len(text.split())
        tokens += len(ids)
        byte_tokens += sum(1 for index in ids if index in byte_ids)
    if words == 0:
        raise DiffutronError("no text to measure fertility on")
    return {
        "words": words,
        "tokens": tokens,
        "tokens_per_word": tokens / words,
        "byte_fallback_share": byte_tokens / max(tokens, 1),
    }
