"""OpenAI's sampling controls: presence and frequency penalties and the logit bias (exact values on
hand-made logits), top-k, top-p and min-p (draws restricted to the kept tokens, in proportion), and
neutral values that build nothing."""

from __future__ import annotations

import math

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.errors import SettingError
from diffutron.model.tokens import SpecialIds
from diffutron.sampling.processors import (
    DuePositions,
    LogitBias,
    OccurrencePenalty,
    TemperatureDraw,
    logits_processors,
    truncation_warpers,
)
from helpers.stats import P_MIN, goodness_of_fit
from helpers.steered import FAVOURED, favoured_logits

IDS = SpecialIds(mask=0, eos=4, pad=7)


@pytest.fixture(scope="module")
def fixed(tiny_tokenizer):
    """Logits 2.0 .. -1.5 on eight tokens and -30 on every other one (the mask token included)."""
    return favoured_logits(len(tiny_tokenizer))


def _draws(model, tokenizer, draws: int, **options) -> list[int]:
    """`draws` independent draws from the model's logits: every position in one call."""
    config = GenerationConfig(
        max_new_tokens=draws, steps=1, block_length=draws, repetition_penalty=1.0, early_stop=False, **options
    )
    return sample(model, tokenizer, [[20]], config)[0, 1:].tolist()


def _kept_softmax(tokens, temperature=1.0):
    weights = {token: math.exp(FAVOURED[token] / temperature) for token in tokens}
    return {token: weight / sum(weights.values()) for token, weight in weights.items()}


# --- neutral values ------------------------------------------------------------------------------


def test_neutral_controls_build_no_processor_and_no_warper(tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    neutral = GenerationConfig(top_k=0, top_p=1.0, min_p=0.0, presence_penalty=0.0, frequency_penalty=0.0)
    assert neutral == GenerationConfig() and neutral.logit_bias is None
    assert logits_processors(neutral.replace(repetition_penalty=1.0), ids, vocabulary=300) == []
    assert truncation_warpers(neutral) == []
    assert GenerationConfig(logit_bias={}).logit_bias is None  # nothing to add: nothing built


# --- presence, frequency, logit bias: exact values ---------------------------------------------------


def test_presence_and_frequency_penalties_count_the_generated_tokens_of_each_row():
    # row 0: given 3, generated 5 5 6, a mask (0) and EOS (4); row 1: generated 6, a mask and padding (7)
    due = DuePositions(
        rows=torch.tensor([0, 1, 1]),
        columns=torch.tensor([4, 1, 2]),
        counts=[1, 2],
        canvas=torch.tensor([[3, 5, 5, 6, 0, 4], [3, 6, 0, 0, 7, 4]]),
        given=torch.tensor([[True, False, False, False, False, False], [True, False, False, False, False, False]]),
    )
    logits = torch.zeros(3, 8)
    changed = OccurrencePenalty(presence=0.5, frequency=0.25, ids=IDS)(logits, due)
    row_0 = [0.0, 0.0, 0.0, 0.0, 0.0, -(0.5 + 2 * 0.25), -(0.5 + 0.25), 0.0]  # 3 is given: not counted
    row_1 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -(0.5 + 0.25), 0.0]
    assert changed.tolist() == [row_0, row_1, row_1]
    negative = OccurrencePenalty(presence=-1.0, frequency=0.0, ids=IDS)(torch.ones(3, 8), due)
    assert negative[0].tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0]  # a negative penalty encourages


def test_logit_bias_adds_to_its_tokens_at_every_position():
    due = DuePositions(torch.tensor([0, 0]), torch.tensor([1, 2]), [2], torch.zeros(1, 3, dtype=torch.long), None)
    biased = LogitBias({2: -100.0, 5: 1.5})(torch.ones(2, 6), due)
    assert biased.tolist() == [[1.0, 1.0, -99.0, 1.0, 1.0, 2.5]] * 2


def test_processors_apply_in_order(tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    config = GenerationConfig(cfg_scale=1.0, presence_penalty=0.1, logit_bias={7: 1.0})
    kinds = [type(processor).__name__ for processor in logits_processors(config, ids, vocabulary=300)]
    assert kinds == ["Guidance", "RepetitionPenalty", "OccurrencePenalty", "LogitBias"]


def test_a_logit_bias_outside_the_vocabulary_is_refused_naming_the_field(tiny_model, tiny_tokenizer):
    vocabulary = tiny_model.config.vocab_size
    config = GenerationConfig(max_new_tokens=2, steps=2, logit_bias={vocabulary: -100})
    with pytest.raises(SettingError) as error:
        sample(tiny_model, tiny_tokenizer, [[20]], config)
    assert error.value.param == "logit_bias"
    assert str(error.value) == f"logit_bias names token {vocabulary}, outside the vocabulary of {vocabulary} tokens"
    sample(tiny_model, tiny_tokenizer, [[20]], config.replace(logit_bias={vocabulary - 1: -100}))  # the last id is in


def test_a_logit_bias_of_minus_100_keeps_a_token_out_of_the_answer(tiny_model, tiny_tokenizer):
    greedy = GenerationConfig(max_new_tokens=12, steps=12, block_length=12, temperature=0.0, early_stop=False)
    answer = sample(tiny_model, tiny_tokenizer, [[20, 21]], greedy)[0, 2:].tolist()
    favourite = max(set(answer), key=answer.count)
    assert answer.count(favourite) >= 3
    banned = sample(tiny_model, tiny_tokenizer, [[20, 21]], greedy.replace(logit_bias={favourite: -100}))[0, 2:]
    assert favourite not in banned.tolist() and tiny_tokenizer.mask_token_id not in banned.tolist()
    forced = sample(tiny_model, tiny_tokenizer, [[20, 21]], greedy.replace(logit_bias={favourite: 100}))[0, 2:]
    assert forced.tolist() == [favourite] * 12


# --- truncation: top-k, top-p, min-p -----------------------------------------------------------------


def test_top_k_of_one_is_greedy_at_any_temperature(tiny_model, tiny_tokenizer):
    prompts = [[20, 21, 22], [30, 31]]
    greedy = GenerationConfig(max_new_tokens=16, steps=8, block_length=8, temperature=0.0)
    expected = sample(tiny_model, tiny_tokenizer, prompts, greedy)
    for temperature, seed in ((0.7, 1), (5.0, 2)):
        hot = greedy.replace(temperature=temperature, seed=seed, top_k=1)
        assert torch.equal(sample(tiny_model, tiny_tokenizer, prompts, hot), expected)
    assert not torch.equal(
        sample(tiny_model, tiny_tokenizer, prompts, greedy.replace(temperature=5.0, seed=2)), expected
    )


@pytest.mark.parametrize(
    "options", [{"top_k": 3}, {"top_p": 0.7}, {"min_p": 0.3}, {"top_k": 5, "top_p": 0.7, "min_p": 0.1}]
)
def test_truncated_draws_follow_the_renormalised_kept_tokens(fixed, tiny_tokenizer, options):
    """Probabilities .401 .243 .147 .089 ...: top-3, the 0.7 nucleus (.792) and p >= 0.3 * .401 keep 10, 11, 12."""
    draws = _draws(fixed, tiny_tokenizer, 3000, temperature=1.0, seed=3, **options)
    assert set(draws) == {10, 11, 12}
    assert goodness_of_fit(draws, _kept_softmax((10, 11, 12))) > P_MIN


def test_the_nucleus_is_taken_after_the_temperature(fixed, tiny_tokenizer):
    """At temperature 0.5 the probabilities are .613 .225 .083 ...: the 0.7 nucleus holds two tokens."""
    draws = _draws(fixed, tiny_tokenizer, 3000, temperature=0.5, seed=4, top_p=0.7)
    assert set(draws) == {10, 11}
    assert goodness_of_fit(draws, _kept_softmax((10, 11), temperature=0.5)) > P_MIN


def test_the_draw_without_truncation_is_unchanged(fixed, tiny_tokenizer):
    """Neutral truncation values draw exactly what the plain draw does (same seed, same tokens)."""
    plain = _draws(fixed, tiny_tokenizer, 1000, temperature=0.8, seed=5)
    assert _draws(fixed, tiny_tokenizer, 1000, temperature=0.8, seed=5, top_k=0, top_p=1.0, min_p=0.0) == plain
    assert len(set(plain)) == 8
    assert _draws(fixed, tiny_tokenizer, 1000, temperature=0.8, seed=5, top_k=300) == plain  # k over the vocabulary


def test_log_distribution_is_what_the_draw_draws_from():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    truncated = TemperatureDraw(0.5, streams=None, warpers=truncation_warpers(GenerationConfig(top_k=2)))
    expected = torch.tensor([[4.0, 2.0]]).log_softmax(dim=-1)[0].tolist()
    values = truncated.log_distribution(logits)[0].tolist()
    assert values[:2] == pytest.approx(expected, abs=1e-6) and values[2:] == [-math.inf, -math.inf]
    greedy = TemperatureDraw(0.0, streams=None, warpers=[])
    assert greedy.log_distribution(logits).tolist() == logits.log_softmax(dim=-1).tolist()
