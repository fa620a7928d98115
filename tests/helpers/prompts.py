"""Prompts for the sampler tests: a hypothesis strategy of short Turkish texts, and their token ids."""

from __future__ import annotations

from hypothesis import strategies as st

WORDS = ["Kitap", " okumak", " güzel", " Ankara", " çay", "?", " bugün", " hava", "\n", " ne demek"]

# one to three prompts of one to eight words each
prompt_texts = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map("".join).filter(str.strip),
    min_size=1,
    max_size=3,
)


def encode_prompts(tokenizer, texts):
    """Token ids of each text, without special tokens (as chat prompts are encoded)."""
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
