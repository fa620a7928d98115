"""Commit rules as registered strategies: the registry, the Predictions a rule sees, the logits
processors, and the Decoder's per-row state (`drop`, `keep`, `done` counted once per call)."""

from __future__ import annotations

import math

import pytest
import torch

from diffutron import GenerationConfig, sample
from diffutron.errors import SettingError
from diffutron.model.tokens import SpecialIds
from diffutron.sampling import sampler as sampler_module
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.processors import DuePositions, Guidance, RepetitionPenalty, logits_processors
from diffutron.sampling.rules import CommitRule, commit_rule, rule_class, rule_names
from diffutron.sampling.rules.count import CountSchedule
from diffutron.sampling.rules.factor import Factor
from diffutron.sampling.rules.threshold import Threshold
from diffutron.sampling.sampler import Decoder, StepEvent, build_canvas

LN2 = math.log(2)


# --- the registry ----------------------------------------------------------------------------------


def test_rules_are_found_by_file_name_default_first():
    assert rule_names() == ("count", "dilated", "early_commit", "entropy_bound", "factor", "revocable", "threshold")
    assert (rule_class("count"), rule_class("factor"), rule_class("threshold")) == (CountSchedule, Factor, Threshold)
    assert all(issubclass(rule_class(name), CommitRule) and rule_class(name).name == name for name in rule_names())


def test_an_unknown_rule_is_refused_naming_the_field():
    with pytest.raises(SettingError) as error:
        rule_class("_parallel")  # a helper module, not a rule
    assert (
        error.value.param == "rule"
        and "choose one of: count, dilated, early_commit, entropy_bound, factor, revocable, threshold"
        in str(error.value)
    )


def test_a_config_builds_its_rule_with_its_knobs():
    count = commit_rule(GenerationConfig(stochastic_transfer=True), steps_per_block=5)
    assert isinstance(count, CountSchedule) and (count.steps_per_block, count.stochastic) == (5, True)
    threshold = commit_rule(GenerationConfig(rule="threshold", threshold=0.8), steps_per_block=5)
    assert isinstance(threshold, Threshold) and threshold.threshold == 0.8
    factor = commit_rule(GenerationConfig(factor=2.5), steps_per_block=5)
    assert isinstance(factor, Factor) and factor.factor == 2.5
    assert (count.until_filled, threshold.until_filled, factor.until_filled) == (False, True, True)


# --- Predictions -----------------------------------------------------------------------------------


def _handmade() -> Predictions:
    """Two due positions of a (2, 3) canvas over a vocabulary of 3: (0, 1) with probabilities
    1/4, 1/4, 1/2 and candidate 2; (1, 2) uniform with candidate 1."""
    logits = torch.tensor([[0.0, 0.0, LN2], [0.0, 0.0, 0.0]])
    rows, columns, tokens = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([2, 1])
    return Predictions(torch.Size([2, 3]), rows, columns, tokens, logits, mask_id=9)


def test_predictions_measure_each_due_position_and_leave_the_rest_empty():
    predictions = _handmade()
    assert predictions.tokens.tolist() == [[9, 2, 9], [9, 9, 1]]
    assert predictions.due.tolist() == [[False, True, False], [False, False, True]]
    due = predictions.due
    assert predictions.probability[due].tolist() == pytest.approx([0.5, 1 / 3], abs=1e-7)
    assert predictions.entropy[due].tolist() == pytest.approx([1.5 * LN2, math.log(3)], abs=1e-6)
    assert predictions.margin[due].tolist() == pytest.approx([0.25, 0.0], abs=1e-7)
    for grid in (predictions.probability, predictions.entropy, predictions.margin):
        assert torch.isnan(grid[~due]).all() and grid.dtype == torch.float32
    # low-confidence remasking: the ranking score is the probability, -inf where nothing is due
    assert torch.equal(predictions.score[due], predictions.probability[due])
    assert predictions.score[~due].tolist() == [-math.inf] * 4


def test_entropy_and_margin_are_summed_in_float32_from_bfloat16_logits():
    vocabulary = 4096  # a sum over this many bfloat16 terms would be off in the second digit
    logits = torch.linspace(-3, 3, vocabulary)[None, :]
    full = Predictions(torch.Size([1, 1]), torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), logits, 9)
    half = Predictions(
        torch.Size([1, 1]), torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), logits.bfloat16(), 9
    )
    exact = torch.special.entr(logits.bfloat16().softmax(dim=-1).float()).sum().item()
    assert half.entropy.item() == pytest.approx(exact, abs=1e-5)
    assert half.entropy.item() == pytest.approx(full.entropy.item(), abs=2e-3)
    top = logits.bfloat16().softmax(dim=-1).float().topk(2).values[0]
    assert half.margin.item() == (top[0] - top[1]).item()
    assert half.probability.dtype == torch.float32


def test_measures_are_computed_only_when_asked():
    predictions = _handmade()
    assert "_distribution" not in vars(predictions)
    predictions.tokens  # noqa: B018
    assert "_distribution" not in vars(predictions)
    predictions.margin  # noqa: B018
    assert "_distribution" in vars(predictions) and "entropy" not in vars(predictions)


def test_random_remasking_ranks_by_its_own_numbers_but_reports_the_probability():
    logits = torch.tensor([[0.0, 0.0, LN2]])
    predictions = Predictions(
        torch.Size([1, 2]), torch.tensor([0]), torch.tensor([0]), torch.tensor([2]), logits, 9, torch.tensor([0.125])
    )
    assert predictions.score.tolist() == [[0.125, -math.inf]]
    assert predictions.probability[0, 0].item() == 0.5


def test_rules_see_the_model_s_predictions(tiny_model, tiny_tokenizer, monkeypatch):
    seen: list[Predictions] = []
    choose = Threshold.choose
    monkeypatch.setattr(Threshold, "choose", lambda self, p, budget: seen.append(p) or choose(self, p, budget))
    events: list[StepEvent] = []
    prompt = tiny_tokenizer("Kitap okumak", add_special_tokens=False)["input_ids"]
    config = GenerationConfig(max_new_tokens=8, block_length=8, temperature=0.0, threshold=0.3)
    sample(tiny_model, tiny_tokenizer, [prompt], config, callback=events.append)
    assert len(seen) == len(events) == events[-1].calls
    for predictions, event in zip(seen, events, strict=True):
        committed = event.committed
        assert torch.equal(event.probability[committed], predictions.probability[committed])
        assert event.confidence is event.probability  # the former name
        # greedy: the candidate is the most probable token, so the margin is its lead over the second
        top = predictions.probability[predictions.due]
        assert bool((predictions.margin[predictions.due] <= top).all())
        assert torch.equal(predictions.due, torch.isfinite(predictions.score))


# --- logits processors -----------------------------------------------------------------------------


def test_processors_apply_in_order_and_only_when_they_change_something(tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    assert logits_processors(GenerationConfig(repetition_penalty=1.0), ids) == []
    kinds = [type(p) for p in logits_processors(GenerationConfig(cfg_scale=1.5), ids)]
    assert kinds == [Guidance, RepetitionPenalty]


def test_guidance_and_penalty_values():
    due = DuePositions(
        rows=torch.tensor([0]),
        columns=torch.tensor([1]),
        counts=[1],
        canvas=torch.tensor([[3, 0, 4]]),  # 0 is the mask, 4 the EOS below
        given=torch.tensor([[True, False, False]]),
    )
    guided = Guidance(2.0)(torch.tensor([[1.0, 2.0], [0.5, 3.0]]), due)
    assert guided.tolist() == [[0.5 + 3 * 0.5, 3.0 + 3 * -1.0]]

    class Ids:
        mask, eos = 0, 4

    logits = torch.tensor([[1.0, 1.0, 1.0, 2.0, -2.0]])
    assert RepetitionPenalty(2.0, "canvas", Ids)(logits.clone(), due).tolist() == [[1.0, 1.0, 1.0, 1.0, -2.0]]
    # generated-only: the given token 3 is no longer penalised
    assert RepetitionPenalty(2.0, "generated", Ids)(logits.clone(), due).tolist() == logits.tolist()


# --- the Decoder's rows ----------------------------------------------------------------------------


def test_drop_stops_a_row_and_remove_takes_it_out(tiny_model, tiny_tokenizer):
    ids = SpecialIds.from_tokenizer(tiny_tokenizer)
    prompts = [tiny_tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("Kitap", "Çay bugün")]
    config = GenerationConfig(max_new_tokens=6, steps=6, block_length=6, temperature=0.0)
    decoder = Decoder(tiny_model, tiny_tokenizer, config, masks=6)
    decoder.add(build_canvas(prompts, 6, ids, torch.device("cpu")), [None, None])
    assert decoder.step() and decoder.done() == [False, False]
    decoder.drop([1])
    assert decoder.done() == [False, True]
    frozen = decoder.canvas[1].clone()
    while decoder.step():
        pass
    assert decoder.calls == 6 and torch.equal(decoder.canvas[1, : frozen.shape[0]], frozen)
    decoder.remove([1])
    assert decoder.rows == 1 and decoder.done() == [True] and decoder.canvas.shape[1] == len(prompts[0]) + 6
    with pytest.raises(Exception, match="cannot drop rows"):
        StepEvent(decoder.canvas, decoder.canvas.bool(), (0,), 1).drop(0)


def test_done_is_counted_once_per_model_call(tiny_model, tiny_tokenizer, monkeypatch):
    counted = []
    done = sampler_module._RowState.done
    monkeypatch.setattr(sampler_module._RowState, "done", lambda self: counted.append(1) or done(self))
    calls = []
    prompt = tiny_tokenizer("Kitap okumak", add_special_tokens=False)["input_ids"]
    config = GenerationConfig(max_new_tokens=8, steps=8, block_length=4, temperature=0.0)
    sample(tiny_model, tiny_tokenizer, [prompt, prompt], config, callback=lambda event: calls.append(event.calls))
    assert len(counted) == len(calls) == calls[-1]
