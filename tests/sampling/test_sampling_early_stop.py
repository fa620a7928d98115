"""Early stopping (docs/reference-behaviour.md, section 3, step 9): an answer is complete once a stop token
or `[/Answer]` lies in the decided prefix of its region; stopping then changes no answer.

The tiny model rarely ends an answer by itself, so the answers here are forced to end at chosen points:
the end token gets a probability near 1 there and is committed first, the tokens before it later.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diffutron import GenerationConfig, sample
from diffutron.lm import Diffutron
from diffutron.model.chat import ANSWER_END, render_chat
from diffutron.sampling.reference import reference_sample
from helpers.prompts import encode_prompts, prompt_texts
from helpers.steered import ForcedTokens
from helpers.tiny import build_model, build_tokenizer

NEW_TOKENS = 24


@cache
def _model(seed: int):
    return build_model(_tokenizer(), seed=seed)


@cache
def _tokenizer():
    return build_tokenizer()


def _ending_model(tokenizer, prompts, ends, kinds, seed=0):
    """The tiny model with each row's answer forced to end `ends[row]` tokens in, by EOS, pad or `[/Answer]`."""
    stop_text = tokenizer(ANSWER_END, add_special_tokens=False)["input_ids"]
    forced = {}
    for row, (prompt, end, kind) in enumerate(zip(prompts, ends, kinds)):
        tokens = {"eos": [tokenizer.eos_token_id], "pad": [tokenizer.pad_token_id], "text": stop_text}[kind]
        for offset, token in enumerate(tokens):
            if end + offset < NEW_TOKENS:
                forced[(row, len(prompt) + end + offset)] = token
    return ForcedTokens(_model(seed), forced)


def _answer_complete(row, start, tokenizer):
    """Whether the decided prefix of a row's answer region holds a stop token or the stop text."""
    region = row[start : start + NEW_TOKENS]
    decided = region[: region.index(tokenizer.mask_token_id)] if tokenizer.mask_token_id in region else region
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return any(token in stops for token in decided) or ANSWER_END in tokenizer.decode(decided)


def _runs(model, tokenizer, prompts, config):
    """(canvas, calls) with early stopping, and the canvases of every step of the run to the end."""
    snapshots = []
    full = sample(
        model,
        tokenizer,
        prompts,
        config.replace(early_stop=False),
        callback=lambda event: snapshots.append(event.canvas.tolist()),
    )
    events = []
    early = sample(model, tokenizer, prompts, config, callback=events.append)
    return early, events[-1].calls, full, snapshots


def _first_complete_step(snapshots, prompts, tokenizer):
    for step, canvas in enumerate(snapshots, start=1):
        if all(_answer_complete(row, len(p), tokenizer) for row, p in zip(canvas, prompts)):
            return step
    return len(snapshots)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=prompt_texts,
    ends=st.lists(st.integers(0, NEW_TOKENS - 1), min_size=3, max_size=3),  # 0: an empty answer
    kinds=st.lists(st.sampled_from(["eos", "pad", "text"]), min_size=3, max_size=3),
    steps=st.integers(4, 40),
    block_length=st.integers(3, 24),
    seed=st.integers(0, 3),
)
# an empty answer ended by the stop text: the text starts at the region's first position
@example(
    texts=["Kitap okumak", "Çay?", "Bugün"],
    ends=[0, 4, 9],
    kinds=["text", "eos", "text"],
    steps=24,
    block_length=8,
    seed=0,
)
def test_early_stop_ends_when_every_answer_is_decided(tiny_tokenizer, texts, ends, kinds, steps, block_length, seed):
    """Same answers as running to the end, after exactly as many calls as it takes for every row's
    decided prefix to hold its end (the end token is committed early, the tokens before it later)."""
    prompts = encode_prompts(tiny_tokenizer, texts)
    model = _ending_model(tiny_tokenizer, prompts, ends, kinds, seed)
    lm = Diffutron(model, tiny_tokenizer)
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, steps=steps, block_length=block_length, temperature=0.0)
    early, calls, full, snapshots = _runs(model, tiny_tokenizer, prompts, config)
    assert calls == _first_complete_step(snapshots, prompts, tiny_tokenizer)
    answers = [lm.answer(row, len(p)) for row, p in zip(early.tolist(), prompts)]
    assert answers == [lm.answer(row, len(p)) for row, p in zip(full.tolist(), prompts)]


def test_early_stop_with_answers_ending_at_different_points(tiny_tokenizer):
    questions = ["Kitap ne demek?", "Bugün hava çok güzel, parka gidelim mi?", "Çay?"]
    prompts = [tiny_tokenizer(render_chat(q), add_special_tokens=False)["input_ids"] for q in questions]
    ends, kinds = [3, 11, 18], ["eos", "text", "pad"]
    model = _ending_model(tiny_tokenizer, prompts, ends, kinds)
    lm = Diffutron(model, tiny_tokenizer)
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, steps=NEW_TOKENS, block_length=8, temperature=0.0)
    early, calls, full, snapshots = _runs(model, tiny_tokenizer, prompts, config)
    assert calls == _first_complete_step(snapshots, prompts, tiny_tokenizer) < NEW_TOKENS
    answers = lm.generate(questions, config)
    assert answers == lm.generate(questions, config.replace(early_stop=False))
    reference = reference_sample(
        model,
        tiny_tokenizer,
        prompts,
        max_new_tokens=NEW_TOKENS,
        steps=NEW_TOKENS,
        block_length=8,
        repetition_penalty=config.repetition_penalty,
    )
    assert answers == [lm.answer(row, len(p)) for row, p in zip(reference.tolist(), prompts)]
    # the answers are the forced lengths: not empty, and each ends somewhere else
    lengths = [len(tiny_tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
    assert all(answers) and len(set(lengths)) == 3
    assert [row[len(p) + end] for row, p, end in zip(full.tolist(), prompts, ends)][::2] == [
        tiny_tokenizer.eos_token_id,
        tiny_tokenizer.pad_token_id,
    ]
