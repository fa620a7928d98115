"""Infill placeholders and the text they produce."""

from __future__ import annotations

import pytest

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.infill import parse_placeholders


def test_parse_placeholders():
    assert parse_placeholders("Bugün [MASK] çok [MASK:3].") == ["Bugün ", 1, " çok ", 3, "."]
    assert parse_placeholders("[MASK:2]") == [2]
    assert parse_placeholders("a [MASK:1] b [MASK:001]") == ["a ", 1, " b ", 1]  # the smallest gap, written out


@pytest.mark.parametrize(("text", "complaint"), [("no gaps", "no placeholder"), ("a [MASK:0]", "1 or more")])
def test_bad_placeholders(text, complaint):
    with pytest.raises(DiffutronError, match=complaint):
        parse_placeholders(text)


def test_infill_keeps_the_text_and_fills_every_gap(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    config = GenerationConfig(temperature=0.0, steps=8, block_length=4)
    result = lm.infill("Kitap [MASK:3] güzel. Çay [MASK] içelim.", config)
    assert result.startswith("Kitap ")
    middle, rest = result[len("Kitap ") :].split(" güzel. Çay ", 1)
    assert rest.endswith(" içelim.")
    assert tiny_tokenizer.mask_token not in result
    events = []
    lm.infill("Kitap [MASK:3] güzel.", config, callback=events.append)
    assert sum(int(e.committed.sum()) for e in events) == 3
