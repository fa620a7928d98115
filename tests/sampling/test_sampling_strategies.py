"""Decoding strategies from the literature as commit rules: confidence measures, the entropy bound,
early commit and the dilated schedule. Each one's defining property, on handmade predictions and on
the tiny model; seeded determinism; and a row decoding the same alone and in a batch."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.modeling_outputs import MaskedLMOutput
from typer.testing import CliRunner

from diffutron import GenerationConfig, sample
from diffutron.errors import SettingError
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.rules import Budget, commit_rule
from diffutron.sampling.rules.count import CountSchedule
from diffutron.sampling.rules.dilated import Dilated, dilation_level
from diffutron.sampling.rules.early_commit import EarlyCommit
from diffutron.sampling.rules.entropy_bound import EntropyBound
from diffutron.sampling.rules.revocable import Revocable
from diffutron.sampling.rules.threshold import Threshold
from helpers.steered import ForcedTokens

LN2 = math.log(2)
STRATEGIES = {
    "margin": {"confidence": "margin", "threshold": 0.02},
    "entropy": {"confidence": "entropy"},
    "entropy_bound": {"entropy_bound": 12.0},
    "early_commit": {"commit_gap": 0.001},
    "dilated": {"rule": "dilated"},
    "revocable": {"draft_threshold": 0.035, "revoke_below": 0.9},
}


def _predictions(logits: list[list[float]], columns: list[int], confidence: str = "probability") -> Predictions:
    """One row of `len(columns)` due positions with the given logits, each candidate its most probable token."""
    values = torch.tensor(logits)
    count = len(columns)
    return Predictions(
        torch.Size([1, 8]),
        torch.zeros(count, dtype=torch.long),
        torch.tensor(columns),
        values.argmax(dim=1),
        values,
        mask_id=9,
        confidence=confidence,
        offsets=torch.tensor(columns),
    )


def _prompt(tokenizer, text: str = "Kitap okumak") -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _recorded(monkeypatch, rule: type) -> list[tuple[Predictions, torch.Tensor]]:
    """Every call's predictions and the positions the rule chose."""
    seen: list[tuple[Predictions, torch.Tensor]] = []
    choose = rule.choose

    def recording(self, predictions, budget):
        chosen = choose(self, predictions, budget)
        seen.append((predictions, chosen))
        return chosen

    monkeypatch.setattr(rule, "choose", recording)
    return seen


# --- confidence measures ---------------------------------------------------------------------------


def test_the_confidence_measure_ranks_and_meets_thresholds():
    # position 0: probabilities 1/4, 1/4, 1/2; position 1: 0.8, 0.1, 0.1
    logits = [[0.0, 0.0, LN2], [math.log(8), 0.0, 0.0]]
    probability = _predictions(logits, [2, 5])
    margin = _predictions(logits, [2, 5], "margin")
    entropy = _predictions(logits, [2, 5], "entropy")
    assert probability.score[0, [2, 5]].tolist() == pytest.approx([0.5, 0.8])
    assert margin.score[0, [2, 5]].tolist() == pytest.approx([0.25, 0.7])
    h1, h2 = 1.5 * LN2, -(0.8 * math.log(0.8) + 0.2 * math.log(0.1))
    assert entropy.score[0, [2, 5]].tolist() == pytest.approx([math.exp(-h1), math.exp(-h2)], abs=1e-6)
    assert margin.score[0, 0].item() == -math.inf and entropy.score[0, 0].item() == -math.inf
    # a threshold of 0.45: both pass on the probability, only position 5 on the margin (0.25 < 0.45)
    assert Threshold(0.45).choose(probability, None)[0].nonzero().flatten().tolist() == [2, 5]
    assert Threshold(0.45).choose(margin, None)[0].nonzero().flatten().tolist() == [5]
    assert Threshold(0.24).choose(margin, None)[0].nonzero().flatten().tolist() == [2, 5]


def test_a_confidence_measure_needs_low_confidence_remasking():
    with pytest.raises(SettingError) as error:
        GenerationConfig(confidence="margin", remasking="random")
    assert error.value.param == "confidence" and "low_confidence" in str(error.value)
    with pytest.raises(SettingError) as error:
        GenerationConfig(confidence="loudness")
    assert str(error.value) == "unknown confidence 'loudness'; choose one of: probability, margin, entropy"


def test_the_count_schedule_ranks_by_the_margin(tiny_model, tiny_tokenizer, monkeypatch):
    seen = _recorded(monkeypatch, CountSchedule)
    config = GenerationConfig(
        early_stop=False, max_new_tokens=8, steps=8, block_length=8, temperature=0.0, confidence="margin"
    )
    sample(tiny_model, tiny_tokenizer, [_prompt(tiny_tokenizer)], config)
    assert len(seen) == 8
    for predictions, chosen in seen:
        assert int(chosen.sum()) == 1
        margins = predictions.margin[predictions.due]
        assert predictions.margin[chosen].item() == margins.max().item()


# --- the entropy bound -----------------------------------------------------------------------------


def test_the_entropy_bound_takes_the_least_uncertain_while_their_sum_fits():
    # entropies: position 1 certain-ish, 3 uniform over 3 (ln 3), 6 over 2 (ln 2)
    logits = [[20.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -100.0]]
    predictions = _predictions(logits, [1, 3, 6])
    entropy = predictions.entropy[0, [1, 3, 6]].tolist()
    assert entropy == pytest.approx([4.1e-8 * 20 + 2 * math.exp(-20), math.log(3), LN2], abs=1e-6)
    taken = lambda bound: EntropyBound(bound).choose(predictions, None)[0].nonzero().flatten().tolist()  # noqa: E731
    assert taken(1e-9) == [1]  # always at least one
    assert taken(0.69) == [1]  # ln 2 does not fit
    assert taken(0.7) == [1, 6]
    assert taken(LN2 + math.log(3) + 0.01) == [1, 3, 6]


# the tiny model's entropies are about ln(vocabulary) = 5.7 nats: under 12 two fit, not three; under 3
# none does, and each call commits the one forced position
@pytest.mark.parametrize(("bound", "per_call"), [(12.0, 2), (3.0, 1)])
def test_committed_entropies_per_call_stay_within_the_bound(tiny_model, tiny_tokenizer, monkeypatch, bound, per_call):
    seen = _recorded(monkeypatch, EntropyBound)
    config = GenerationConfig(early_stop=False, max_new_tokens=16, block_length=8, temperature=0.0, entropy_bound=bound)
    sample(tiny_model, tiny_tokenizer, [_prompt(tiny_tokenizer)] * 2, config)
    sizes = []
    for predictions, chosen in seen:
        for row in range(chosen.shape[0]):
            committed = predictions.entropy[row][chosen[row]]
            left = predictions.entropy[row][predictions.due[row] & ~chosen[row]]
            sizes.append(len(committed))
            assert committed.sum().item() <= bound or len(committed) == 1  # the one forced commit
            if len(left):
                assert committed.max() <= left.min()  # least uncertain first
                assert committed.sum() + left.min() > bound  # the next one would not have fitted
    assert sizes == [per_call] * (2 * 16 // per_call)


# --- early commit ----------------------------------------------------------------------------------


def test_early_commit_fires_only_when_every_gap_reaches_the_bound():
    budget = Budget((1,), torch.tensor([1]))
    # gaps: position 2 0.25, position 5 0.7
    predictions = _predictions([[0.0, 0.0, LN2], [math.log(8), 0.0, 0.0]], [2, 5])
    chosen = lambda gap: EarlyCommit(1, False, gap).choose(predictions, budget)[0].nonzero().flatten().tolist()  # noqa: E731
    smallest = predictions.margin[0, 2]
    assert smallest.item() == pytest.approx(0.25) and chosen(smallest.item()) == [2, 5]
    above = torch.nextafter(smallest, torch.tensor(1.0)).item()  # the next float32: the gaps are float32
    assert chosen(above) == [5]  # the count schedule's one best position only


def test_early_commit_on_a_model_sure_of_every_answer_position(tiny_model, tiny_tokenizer, monkeypatch):
    prompt = _prompt(tiny_tokenizer)
    forced = {(0, len(prompt) + offset): 20 + offset for offset in range(8)}
    model = ForcedTokens(tiny_model, forced, strength=12.0)
    base = GenerationConfig(
        early_stop=False, max_new_tokens=8, steps=8, block_length=8, temperature=0.0, repetition_penalty=1.0
    )
    seen = _recorded(monkeypatch, EarlyCommit)
    canvas = sample(model, tiny_tokenizer, [prompt], base.replace(commit_gap=0.5))
    gaps = seen[0][0].margin[seen[0][0].due]
    assert len(seen) == 1 and bool((gaps >= 0.5).all()) and int(seen[0][1].sum()) == 8
    assert canvas[0, len(prompt) :].tolist() == list(range(20, 28))
    # above every gap it never fires: the count schedule's 8 calls, and the same canvas as `count`
    above = torch.nextafter(gaps.max(), torch.tensor(2.0)).item()
    seen.clear()
    late = sample(model, tiny_tokenizer, [prompt], base.replace(commit_gap=above))
    assert len(seen) == 8 and all(int(chosen.sum()) == 1 for _, chosen in seen)
    assert torch.equal(late, sample(model, tiny_tokenizer, [prompt], base))


def test_early_commit_fires_exactly_at_the_calls_above_its_bound(tiny_model, tiny_tokenizer, monkeypatch):
    seen = _recorded(monkeypatch, EarlyCommit)
    gap = 0.004
    config = GenerationConfig(
        early_stop=False, max_new_tokens=16, steps=16, block_length=8, temperature=0.0, commit_gap=gap
    )
    sample(tiny_model, tiny_tokenizer, [_prompt(tiny_tokenizer)], config)
    fired = 0
    for predictions, chosen in seen:
        sure = bool((predictions.margin[predictions.due] >= gap).all())
        assert int(chosen.sum()) == (int(predictions.due.sum()) if sure else 1)
        fired += sure
    assert fired >= 1 and len(seen) == 16 - sum(int(c.sum()) - 1 for _, c in seen)


# --- the dilated schedule --------------------------------------------------------------------------


def test_dilation_levels():
    assert dilation_level(torch.arange(8), 8).tolist() == [0, 2, 1, 2, 0, 2, 1, 2]
    assert dilation_level(torch.arange(4), 4).tolist() == [0, 1, 0, 1]
    assert dilation_level(torch.arange(3), 3).tolist() == [0, 1, 0]
    assert dilation_level(torch.arange(2), 2).tolist() == [0, 1]
    assert dilation_level(torch.tensor([-2, 0, 16]), 32).tolist() == [-1, 0, 0]
    assert len(set(dilation_level(torch.arange(32), 32).tolist())) == 5  # log2 32 calls


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_the_dilated_schedule_commits_spread_out_groups(tiny_model, tiny_tokenizer, cache):
    prompt = _prompt(tiny_tokenizer)
    events = []
    config = GenerationConfig(
        early_stop=False, max_new_tokens=16, block_length=8, temperature=0.0, rule="dilated", cache=cache
    )
    sample(tiny_model, tiny_tokenizer, [prompt, prompt[:3]], config, callback=events.append)
    for row, start in ((0, len(prompt)), (1, 3)):
        offsets = [(event.committed[row].nonzero().flatten() - start).tolist() for event in events]
        assert offsets == [[0, 4], [2, 6], [1, 3, 5, 7], [8, 12], [10, 14], [9, 11, 13, 15]]
    assert isinstance(commit_rule(config, 1), Dilated)


# --- revocable commits ----------------------------------------------------------------------------


class ForcedPerCall(torch.nn.Module):
    """`model` with tokens forced at chosen (row, position)s, a different choice at each call (the last
    one from then on)."""

    def __init__(self, model: torch.nn.Module, per_call: list[dict[tuple[int, int], int]]) -> None:
        super().__init__()
        self.base = model
        self.per_call = per_call
        self.config = model.config
        self.calls = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> MaskedLMOutput:
        logits = self.base(input_ids=input_ids, attention_mask=attention_mask).logits.clone()
        for (row, position), token in self.per_call[min(self.calls, len(self.per_call) - 1)].items():
            logits[row, position, token] += 12.0
        self.calls += 1
        return MaskedLMOutput(logits=logits)


def test_revoked_tokens_are_masked_again_and_decided_later(tiny_model, tiny_tokenizer):
    prompt = _prompt(tiny_tokenizer)
    start = len(prompt)
    # call 1 backs offsets 0-3, call 2 only offsets 4-7: three of the four drafts lose their backing
    first = {(0, start + offset): 20 + offset for offset in range(4)}
    second = {(0, start + offset): 20 + offset for offset in range(4, 8)}
    model = ForcedPerCall(tiny_model, [first, second, {}])
    config = GenerationConfig(
        early_stop=False,
        max_new_tokens=8,
        block_length=8,
        temperature=0.0,
        repetition_penalty=1.0,
        draft_threshold=0.5,
        revoke_below=0.9,
    )
    events = []
    canvas = sample(model, tiny_tokenizer, [prompt], config, callback=events.append)
    mask = tiny_tokenizer.mask_token_id
    committed = [(event.committed[0].nonzero().flatten() - start).tolist() for event in events]
    revoked = [(event.revoked[0].nonzero().flatten() - start).tolist() for event in events]
    assert committed[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert revoked[0] == [] and len(revoked[1]) == 3 and set(revoked[1]) < {0, 1, 2, 3}  # fewer than it commits
    for offset in revoked[1]:
        assert events[1].canvas[0, start + offset].item() == mask  # masked again
        assert any(offset in later for later in committed[2:])  # and decided later
    assert len(events) <= 8 and not bool((canvas == mask).any())  # nothing left masked


def test_revocation_takes_the_least_probable_and_fewer_than_the_commits():
    held = torch.tensor([[9, 1, 2, 9, 0]])  # offsets 1, 2, 4 hold tokens; 0 and 3 are open (mask 9)
    logits = torch.log(
        torch.tensor([[0.1, 0.1, 0.8], [0.5, 0.3, 0.2], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]])
    )
    predictions = Predictions(
        torch.Size([1, 5]),
        torch.zeros(5, dtype=torch.long),
        torch.arange(5),
        logits.argmax(dim=1),
        logits,
        9,
        held=held[0],
    )
    assert predictions.decided.tolist() == [[False, True, True, False, True]]
    assert predictions.held_probability[0, [1, 2, 4]].tolist() == pytest.approx([0.3, 0.6, 0.3])
    rule = Revocable(draft_threshold=0.5, revoke_below=0.65)
    committed = rule.choose(predictions, None)
    assert committed.tolist() == [[True, False, False, True, False]]  # open masks only
    # two new tokens: at most one revocation, the least probable weak one (ties: the first)
    assert rule.revoke(predictions, committed).tolist() == [[False, True, False, False, False]]
    assert not rule.revoke(predictions, committed & torch.tensor([[True, False, False, False, False]])).any()


# --- every strategy: seeded, and a row the same alone and in a batch ------------------------------


@pytest.mark.parametrize("cache", ["none", "dual"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_strategy_is_seeded_and_decodes_a_row_alone_as_in_a_batch(tiny_model, tiny_tokenizer, strategy, cache):
    # prompts of one length: padding changes the float rounding of a row (docs/serving.md), and on the tiny
    # model the margins of a row's positions lie within that rounding of each other
    texts = ("Kitap okumak güzel", "Çay bugün çok güzel", "Güneş doğudan doğar")
    prompts = [_prompt(tiny_tokenizer, text)[:4] for text in texts]
    config = GenerationConfig(
        early_stop=False, max_new_tokens=12, steps=12, block_length=4, temperature=0.7, seed=11, cache=cache
    )
    config = config.replace(**STRATEGIES[strategy])
    batch = sample(tiny_model, tiny_tokenizer, prompts, config)
    assert torch.equal(batch, sample(tiny_model, tiny_tokenizer, prompts, config))
    for row, prompt in enumerate(prompts):
        alone = sample(tiny_model, tiny_tokenizer, [prompt], config, row_seeds=[11 + row])
        assert torch.equal(alone[0], batch[row, : alone.shape[1]])
    other = sample(tiny_model, tiny_tokenizer, prompts, config.replace(seed=12))
    assert not torch.equal(batch, other)


# --- through the seams -----------------------------------------------------------------------------


def test_the_command_line_and_http_take_the_strategies():
    from diffutron.serve.schemas import DiffusionSettings, page_settings
    from helpers.cli_probe import generation_probe

    command, seen = generation_probe()
    flags = ["--entropy-bound", "0.5", "--confidence", "margin"]
    assert CliRunner().invoke(command, flags).exit_code == 0
    assert (seen["config"].commit_rule, seen["config"].entropy_bound, seen["config"].confidence) == (
        "entropy_bound",
        0.5,
        "margin",
    )
    assert CliRunner().invoke(command, ["--commit-gap", "0.3"]).exit_code == 0
    assert seen["config"].rule_settings() == {"commit_gap": 0.3}
    assert CliRunner().invoke(command, ["--draft-threshold", "0.6", "--revoke-below", "0.9"]).exit_code == 0
    assert seen["config"].rule_settings() == {"draft_threshold": 0.6, "revoke_below": 0.9}
    body = DiffusionSettings(rule="dilated", confidence="entropy")
    assert body.sampler_settings() == {"rule": "dilated", "confidence": "entropy"}
    fields = page_settings()["fields"]
    assert fields["confidence"]["choices"] == ["probability", "margin", "entropy"]
    assert "dilated" in fields["rule"]["choices"] and fields["commit_gap"]["maximum"] == 1
