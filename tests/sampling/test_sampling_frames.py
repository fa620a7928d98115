"""Denoising frames against the sampler's own step callback, on the embedded model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers.modeling_outputs import MaskedLMOutput

from diffutron import Diffutron, GenerationConfig
from diffutron.model.chat import render_chat
from diffutron.sampling.frames import FrameBuilder, frame_text, visible_positions, visible_tokens
from diffutron.sampling.stopping import AnswerStops

QUESTIONS = ["«kitap» ne demek?", "«güzel» kelimesinin eş anlamlısı nedir?"]


@pytest.fixture(scope="module")
def lm():
    return Diffutron.from_pretrained(None)


class Both:
    """The step callback: keeps a copy of every event and the frames built from it at that moment."""

    def __init__(self, builder):
        self.builder = builder
        self.events = []
        self.frames = []

    def __call__(self, event):
        self.events.append(
            (event.canvas.clone(), event.committed.clone(), event.confidence.clone(), event.blocks, event.calls)
        )
        self.frames.append(self.builder.frames(event))


@pytest.mark.parametrize("speed", ["exact", "fast"])
def test_frames_follow_the_step_callback_and_end_on_the_answer(lm, speed):
    config = lm.config.replace(
        **({"threshold": 0.9, "cache": "dual"} if speed == "fast" else {}),
        seed=0,
        max_new_tokens=32,
        steps=32,
        block_length=16,
    )
    prompts = [lm.encode(render_chat(question)) for question in QUESTIONS]
    seen = Both(FrameBuilder.for_prompts(lm.tokenizer, [len(p) for p in prompts], config.max_new_tokens))
    answers = lm.generate(QUESTIONS, config, callback=seen)
    assert all(answers)
    assert len(seen.frames) == seen.events[-1][4] > 1
    for (canvas, committed, confidence, block, calls), frames in zip(seen.events, seen.frames):
        for row, (prompt, frame) in enumerate(zip(prompts, frames)):
            region = slice(len(prompt), len(prompt) + config.max_new_tokens)
            ids = canvas[row, region]
            assert (frame["index"], frame["call"], frame["block"]) == (row, calls, block[row])
            assert [token is None for token in frame["tokens"]] == (ids == lm.special.mask).tolist()
            assert frame["committed"] == committed[row, region].nonzero().flatten().tolist()
            expected = confidence[row, region][committed[row, region]]
            assert frame["confidence"] == pytest.approx(expected.tolist(), abs=1e-4)
            assert all(0 < value <= 1 for value in frame["confidence"])
            assert all(round(value, 4) == value for value in frame["confidence"])  # four decimals, as documented
            decided = ids[: int((ids == lm.special.mask).long().cumsum(0).eq(0).sum())].tolist()
            prefix = frame["tokens"][: len(decided)]
            assert "".join(prefix) == lm.tokenizer.decode(decided, skip_special_tokens=True)
            json.dumps(frame, allow_nan=False)
    last = seen.frames[-1]
    assert [frame_text(frame["tokens"]) for frame in last] == answers
    assert ["".join(frame["visible"]).strip() for frame in last] == answers
    assert all(frame["visible"] == frame["tokens"] for frame in seen.frames[0])  # nothing decided ends yet
    assert ["".join(visible_tokens(frame["tokens"])).strip() for frame in last] == answers


def test_regions_default_to_the_masked_positions(lm):
    """Without regions the builder takes what was masked before the first call: chat and infill."""
    config = lm.config.replace(seed=0, max_new_tokens=32, steps=16)
    builder = FrameBuilder(lm.tokenizer)
    frames = []
    answer = lm.chat(QUESTIONS[0], config, callback=lambda event: frames.append(builder.frame(event, 0)))
    assert len(frames[0]["tokens"]) == config.max_new_tokens
    assert frame_text(frames[-1]["tokens"]) == answer

    builder = FrameBuilder(lm.tokenizer)
    frames = []
    filled = lm.infill(
        "Çocuklar bahçede [MASK:2] oynuyor.", config, callback=lambda event: frames.append(builder.frame(event, 0))
    )
    assert len(frames[-1]["tokens"]) == 2 and None not in frames[-1]["tokens"]
    assert filled == "Çocuklar bahçede " + "".join(frames[-1]["tokens"]) + " oynuyor."


def test_partial_characters_wait_for_their_last_byte(lm):
    """Byte-fallback tokens: a character split over tokens shows on the token that completes it."""
    ids = lm.encode("a漢b")
    builder = FrameBuilder(lm.tokenizer)
    texts = builder.token_texts(ids)
    assert "".join(texts) == "a漢b"
    assert "\ufffd" not in "".join(texts)
    assert len(texts) == len(ids) and texts[1:-2] == [""] * (len(ids) - 3) and texts[-2] == "漢"  # one per token
    assert len(ids) > 3, "the character was not split over byte tokens: the check saw nothing"
    split = [*ids[:2], lm.special.mask, *ids[3:]]  # the character's second byte still masked
    partial = builder.token_texts(split)
    assert partial[2] is None and partial[1] == "\ufffd"


def test_visible_tokens_end_at_the_answer_tag():
    tokens = ["Bir", " şey", ".", "\n[/", "Answer", "]", "\n", None]
    assert visible_tokens(tokens) == ["Bir", " şey", "."]
    assert visible_tokens(["Bir", ".[/", "Answer]", None]) == ["Bir", "."]
    undecided = ["Bir", None, "\n[/", "Answer", "]"]  # a mask before the tag: the end is not decided
    assert visible_tokens(undecided) == undecided
    assert frame_text(["Bir", " şey", None, "x"]) == "Bir şey"


class MaskAtEvenPositions(torch.nn.Module):
    """The tiny model, sure that every even canvas position is the mask token: those positions are committed
    early and stay masked (the sampler writes the mask back)."""

    def __init__(self, inner, mask_id):
        super().__init__()
        self.inner, self.mask_id, self.config = inner, mask_id, inner.config

    def forward(self, input_ids, attention_mask=None):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask).logits.clone()
        even = torch.arange(input_ids.shape[1]) % 2 == 0
        logits[:, even, self.mask_id] = logits[:, even].max(dim=-1).values + 8
        return MaskedLMOutput(logits=logits)


def test_a_position_left_masked_is_never_listed_as_committed(tiny_model, tiny_tokenizer):
    lm = Diffutron(MaskAtEvenPositions(tiny_model, tiny_tokenizer.mask_token_id), tiny_tokenizer)
    # one call per block of 4 commits all its positions (and the masks left open before it)
    config = GenerationConfig(max_new_tokens=8, steps=2, block_length=4, temperature=0.0, early_stop=False)
    builder = FrameBuilder(tiny_tokenizer)
    frames = []
    lm.chat("Kitap ne demek?", config, callback=lambda event: frames.append(builder.frame(event, 0)))
    # the second call's four commits all go to the masks, the two left open and two of its own block
    assert len(frames) == 2 and [len(frame["committed"]) for frame in frames] == [2, 0]
    for frame in frames:
        assert all(frame["tokens"][position] is not None for position in frame["committed"]), frame
        assert len(frame["confidence"]) == len(frame["committed"])
    masked = [position for position, token in enumerate(frames[-1]["tokens"]) if token is None]
    assert len(masked) == 6
    assert sorted(position for frame in frames for position in frame["committed"]) == [
        position for position in range(8) if position not in masked
    ]


def test_frames_show_the_answer_up_to_its_end(tiny_tokenizer):
    """`visible` is cut where the answer ends: a decided stop token, the end tag, or a request's stop string."""

    class Event:
        def __init__(self, ids):
            self.canvas = torch.tensor([ids])
            self.committed = torch.zeros_like(self.canvas, dtype=torch.bool)
            self.confidence = torch.full(self.canvas.shape, math.nan)
            self.blocks, self.calls = (0,), 1

    encode = lambda text: tiny_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    mask, eos = tiny_tokenizer.mask_token_id, tiny_tokenizer.eos_token_id
    answer = encode("Bir şey")
    ids = [*answer, eos, *encode(" sonra"), mask]
    builder = FrameBuilder(tiny_tokenizer, [range(len(ids))])
    frame = builder.frame(Event(ids), 0)
    assert "".join(frame["visible"]) == "Bir şey" and len(frame["visible"]) == len(answer)
    assert frame_text(frame["tokens"]) == "Bir şey sonra"  # the texts alone do not show the end token
    assert frame_text(visible_positions(frame)) == "Bir şey"
    stops = AnswerStops.for_tokenizer(tiny_tokenizer, [" ş"])
    assert builder.frame(Event(ids), 0, stops=stops)["visible"] == ["B", "ir"]
    undecided = [*answer, mask, eos, mask]
    frame = FrameBuilder(tiny_tokenizer, [range(len(undecided))]).frame(Event(undecided), 0)
    assert frame["visible"] == frame["tokens"] and frame["visible"][-3:] == [None, "", None]
    assert visible_positions({"tokens": ["a", "[/Answer]", "b"]}) == ["a"]  # a frame made without `visible`
