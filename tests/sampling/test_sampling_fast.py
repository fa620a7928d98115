"""Fast generation: parallel decoding rules, the ModernBERT block cache, batches in every mode."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertForMaskedLM

from diffutron import Diffutron, DiffutronError, GenerationConfig, sample
from diffutron.model.parts import MaskedLMParts
from diffutron.sampling.cache import BlockCache
from diffutron.sampling.commit import Factor, Threshold
from diffutron.sampling.predictions import Predictions
from diffutron.sampling.sampler import _recomputed_positions
from helpers.prompts import encode_prompts
from helpers.tiny import context_sensitive_model

INF = math.inf
TEXTS = ["Kitap okumak", "Ankara çay bugün hava güzel mi? Kitap okumak insanın ufkunu", "Çay?"]
GREEDY = GenerationConfig(max_new_tokens=24, steps=24, block_length=8, temperature=0.0, early_stop=False)
# Cached logits are compared with a plain pass at this tolerance (float32; the kernels differ
# only in the order of additions).
LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def sensitive(tiny_tokenizer):
    return context_sensitive_model(tiny_tokenizer)


# --- parallel decoding rules -------------------------------------------------------------


def test_threshold_commits_every_confident_position_and_at_least_one():
    confidence = torch.tensor(
        [
            [0.95, 0.50, 0.91, -INF, 0.90],
            [0.20, 0.40, -INF, 0.10, -INF],  # nothing reaches the threshold: the best one only
            [-INF, -INF, -INF, -INF, -INF],  # nothing eligible (finished row / no masks)
        ]
    )
    chosen = Threshold(0.9).choose(Predictions.from_scores(confidence), None)
    assert chosen.tolist() == [
        [True, False, True, False, True],
        [False, True, False, False, False],
        [False] * 5,
    ]


def _factor_by_hand(confidences: list[float], factor: float) -> int:
    """The rule as written: largest n with (i + 1) * (1 - c_i) < f for all i <= n, at least 1."""
    ordered = sorted(confidences, reverse=True)
    n = 0
    for i, c in enumerate(ordered, start=1):
        if (i + 1) * (1 - c) >= factor:
            break
        n = i
    return max(n, 1) if ordered else 0


def test_factor_rule_example():
    # c = .99 .9 .8 .5 with f = 1: 2*.01, 3*.1, 4*.2 are < 1, 5*.5 is not -> 3 tokens
    confidence = torch.tensor([[0.5, 0.99, -INF, 0.8, 0.9]])
    assert Factor(1.0).choose(Predictions.from_scores(confidence), None).tolist() == [[False, True, False, True, True]]
    # the first already fails (2 * 0.6 >= 1): still one token, the most confident
    assert Factor(1.0).choose(Predictions.from_scores(torch.tensor([[0.3, 0.4, -INF]])), None).tolist() == [
        [False, True, False]
    ]
    # the inequality is strict: 3 * (1 - 0.5) = 1.5 (exact in binary) does not pass a factor of 1.5
    assert Factor(1.5).choose(Predictions.from_scores(torch.tensor([[0.5, 0.75]])), None).tolist() == [[False, True]]
    assert Factor(1.5001).choose(Predictions.from_scores(torch.tensor([[0.5, 0.75]])), None).tolist() == [[True, True]]


@settings(max_examples=200, deadline=None)
@given(
    confidences=st.lists(
        st.lists(st.one_of(st.floats(0, 1), st.just(-INF)), min_size=1, max_size=9), min_size=1, max_size=3
    ).filter(lambda rows: len({len(r) for r in rows}) == 1),
    factor=st.floats(0.01, 6.0),
)
def test_factor_rule_matches_its_definition(confidences, factor):
    grid = torch.tensor(confidences, dtype=torch.float32)
    chosen = Factor(factor).choose(Predictions.from_scores(grid), None)
    for row, picked in zip(grid.tolist(), chosen):
        finite = [c for c in row if c != -INF]
        assert int(picked.sum()) == _factor_by_hand(finite, factor)
        if finite:  # the chosen ones are the most confident
            assert min(c for c, p in zip(row, picked.tolist()) if p) >= max(
                [c for c, p in zip(row, picked.tolist()) if not p and c != -INF], default=-INF
            )


# --- the cache, proved against a plain forward pass --------------------------------------


def _canvas(tokenizer, rows: int, width: int = 40, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(tokenizer), (rows, width), generator=generator)
    attention_mask = None
    if rows > 1:  # shorter rows are padded with EOS at the end, as in a generation canvas
        for row, length in enumerate([width, width - 11, width - 17][:rows]):
            ids[row, length:] = tokenizer.eos_token_id
        attention_mask = (ids != tokenizer.eos_token_id).long()
    return ids, attention_mask


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_cached_logits_equal_a_plain_pass_when_refreshed(tiny_tokenizer, mode, rows, attention):
    """After a refresh on the same canvas, the cached pass is a plain pass: RoPE positions, the
    local window (8 tokens on a 40-token canvas), global layers and padding all have to be right."""
    model = context_sensitive_model(tiny_tokenizer)
    model.config._attn_implementation = attention
    parts = MaskedLMParts(model)
    ids, attention_mask = _canvas(tiny_tokenizer, rows)
    plain = model(input_ids=ids, attention_mask=attention_mask).logits
    real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    block = torch.arange(12, 20).expand(rows, -1) + torch.tensor([0, 3, 5][:rows])[:, None]
    cache = BlockCache(model, mode)

    refreshed = parts.logits(cache.hidden(ids, attention_mask, block, [True] * rows), pad=False)
    assert torch.allclose(refreshed[real], plain[real], atol=LOGIT_TOLERANCE)

    stepped = parts.logits(cache.hidden(ids, attention_mask, block, [False] * rows), pad=False)
    for row in range(rows):
        active = block[row] if mode == "dual" else torch.arange(int(block[row, 0]), ids.shape[1])
        active = active[real[row, active]]
        assert torch.allclose(stepped[row, active], plain[row, active], atol=LOGIT_TOLERANCE)

    # the step really reuses the cache: stale keys and values change the block's logits
    changed = ids.clone()
    changed[:, :5] = tiny_tokenizer.mask_token_id  # outside the active positions: cached
    stale = parts.logits(cache.hidden(changed, attention_mask, block, [False] * rows), pad=False)
    fresh = model(input_ids=changed, attention_mask=attention_mask).logits
    assert not torch.allclose(stale[0, block[0]], fresh[0, block[0]], atol=1e-2)


def test_cached_steps_run_the_encoder_on_the_block_only(tiny_tokenizer, sensitive):
    seen = []
    hook = sensitive.model.embeddings.register_forward_hook(lambda _m, _i, output: seen.append(output.shape[1]))
    try:
        prompt = encode_prompts(tiny_tokenizer, TEXTS[:1])
        sample(sensitive, tiny_tokenizer, prompt, GREEDY.replace(cache="dual"))
        width = len(prompt[0]) + 24
        assert seen == [width] + [8] * 7 + [width] + [8] * 7 + [width] + [8] * 7  # 3 blocks of 8 calls
        seen.clear()
        sample(sensitive, tiny_tokenizer, prompt, GREEDY.replace(cache="prefix", refresh_every=4))
        starts = [len(prompt[0]) + 8 * block for block in range(3)]
        assert seen == [w for start in starts for w in ([width] + [width - start] * 3) * 2]
    finally:
        hook.remove()


def test_recomputed_positions_lead_the_block_with_the_masks_left_open():
    region = torch.tensor([[3, 4, 5, 6, 7, 8], [10, 11, 12, 13, 14, 15]])
    earlier = torch.tensor([[False, True, False, True, False, False], [False, False, False, False, False, False]])
    start, end = torch.tensor([4, 4]), torch.tensor([6, 6])
    # row 0 has two earlier masks open (4 and 6); row 1 none, so it repeats its block's first position
    assert _recomputed_positions(region, earlier, start, end, 2, 2).tolist() == [[4, 6, 7, 8], [14, 14, 14, 15]]
    one_open = earlier & (torch.arange(6) != 3)  # row 0 keeps only position 4 open: a width of one
    assert _recomputed_positions(region, one_open, start, end, 2, 1).tolist() == [[4, 7, 8], [14, 14, 15]]
    assert _recomputed_positions(region, earlier & False, start, end, 2, 0).tolist() == [[7, 8], [14, 15]]
    # rows in different blocks; a shorter last block repeats its last position
    start, end = torch.tensor([4, 0]), torch.tensor([5, 3])
    assert _recomputed_positions(region, earlier & False, start, end, 3, 0).tolist() == [[7, 7, 7], [10, 11, 12]]


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cached_step_over_scattered_and_repeated_positions(tiny_tokenizer, mode):
    """Earlier open masks before the block, and a row padded by repeating a position."""
    model = context_sensitive_model(tiny_tokenizer)
    parts = MaskedLMParts(model)
    ids, attention_mask = _canvas(tiny_tokenizer, 2)
    plain = model(input_ids=ids, attention_mask=attention_mask).logits
    positions = torch.tensor([[3, 9, 20, 21, 22], [20, 20, 20, 21, 22]])
    cache = BlockCache(model, mode)
    cache.hidden(ids, attention_mask, positions, [True, True])
    stepped = parts.logits(cache.hidden(ids, attention_mask, positions, [False, False]), pad=False)
    for row in range(2):
        active = positions[row] if mode == "dual" else torch.arange(int(positions[row, 0]), ids.shape[1] - 11 * row)
        assert torch.allclose(stepped[row, active], plain[row, active], atol=LOGIT_TOLERANCE)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cached_steps_recompute_the_masks_left_open(tiny_tokenizer, mode, monkeypatch):
    """While block 0 prefers the mask token its masks stay open; later blocks fill them, and every
    cached step recomputes each open mask up to the block's end (none is read from stale zeros)."""
    model = context_sensitive_model(tiny_tokenizer)
    mask = tiny_tokenizer.mask_token_id
    with torch.no_grad():
        model.decoder.bias[mask] += 1e4
    checked = []
    original = BlockCache.hidden

    def checking_hidden(self, input_ids, attention_mask, positions, refresh):
        if self.keys:
            for row in [row for row, renewed in enumerate(refresh) if not renewed]:
                open_masks = (input_ids[row, : int(positions[row].max()) + 1] == mask).nonzero().flatten()
                if mode == "dual":
                    assert set(open_masks.tolist()) <= set(positions[row].tolist())
                else:
                    assert int(positions[row, 0]) <= int(open_masks.min())
                checked.append(len(open_masks))
        return original(self, input_ids, attention_mask, positions, refresh)

    def stop_preferring_masks(event):
        if event.blocks[0] == 0 and event.calls == 8:
            with torch.no_grad():
                model.decoder.bias[mask] -= 1e4

    monkeypatch.setattr(BlockCache, "hidden", checking_hidden)
    prompts = encode_prompts(tiny_tokenizer, TEXTS[:2])
    events = []
    canvas = sample(
        model,
        tiny_tokenizer,
        prompts,
        GREEDY.replace(cache=mode),
        callback=lambda event: (stop_preferring_masks(event), events.append(event)),
    )
    assert not any(bool(event.committed.any()) for event in events[:8])  # block 0 wrote masks back
    assert max(checked) > 8  # cached steps saw more open masks than one block holds
    for row, prompt in enumerate(prompts):
        assert bool((canvas[row, len(prompt) : len(prompt) + 8] != mask).any())  # filled in later blocks


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(st.sampled_from(TEXTS), min_size=1, max_size=3),
    max_new_tokens=st.integers(1, 20),
    steps=st.integers(1, 20),
    block_length=st.integers(1, 12),
    mode=st.sampled_from(["prefix", "dual"]),
    cfg_scale=st.sampled_from([0.0, 1.5]),
    repetition_penalty=st.sampled_from([1.0, 1.2]),
)
def test_cache_refreshed_every_call_gives_the_uncached_canvas(
    tiny_tokenizer, sensitive, texts, max_new_tokens, steps, block_length, mode, cfg_scale, repetition_penalty
):
    prompts = encode_prompts(tiny_tokenizer, texts)
    config = GREEDY.replace(
        max_new_tokens=max_new_tokens,
        steps=steps,
        block_length=block_length,
        cfg_scale=cfg_scale,
        repetition_penalty=repetition_penalty,
    )
    expected = sample(sensitive, tiny_tokenizer, prompts, config)
    actual = sample(sensitive, tiny_tokenizer, prompts, config.replace(cache=mode, refresh_every=1))
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_cache_refreshed_per_block_stays_close_to_the_uncached_sampler(tiny_tokenizer, sensitive, mode):
    prompts = encode_prompts(tiny_tokenizer, TEXTS)
    uncached = sample(sensitive, tiny_tokenizer, prompts, GREEDY)
    cached = sample(sensitive, tiny_tokenizer, prompts, GREEDY.replace(cache=mode))
    generated = torch.cat(
        [uncached[row, len(p) : len(p) + 24] == cached[row, len(p) : len(p) + 24] for row, p in enumerate(prompts)]
    )
    assert not bool((cached == tiny_tokenizer.mask_token_id).any())
    # an approximation, on a model built to be sensitive to it: mostly the same tokens, not all
    assert 0.6 <= generated.float().mean().item() < 1.0


# --- batches of different lengths, in every mode -----------------------------------------

MODES = [
    {},
    {"threshold": 0.02},
    {"factor": 3.0},
    {"cache": "prefix"},
    {"cache": "dual"},
    {"threshold": 0.02, "cache": "dual", "cfg_scale": 1.0},
    {"factor": 3.0, "cache": "prefix", "repetition_penalty": 1.0},
]


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: "-".join(f"{k}={v}" for k, v in mode.items()) or "exact")
def test_a_batch_gives_each_prompt_what_it_gets_alone(tiny_tokenizer, sensitive, mode):
    config = GREEDY.replace(**mode)
    prompts = encode_prompts(tiny_tokenizer, TEXTS)
    batch = sample(sensitive, tiny_tokenizer, prompts, config)
    for row, prompt in enumerate(prompts):
        alone = sample(sensitive, tiny_tokenizer, [prompt], config)[0]
        assert torch.equal(batch[row, : alone.shape[0]], alone)
        assert bool((batch[row, alone.shape[0] :] == tiny_tokenizer.eos_token_id).all())


def test_parallel_rules_take_fewer_calls(tiny_tokenizer, sensitive):
    prompts = encode_prompts(tiny_tokenizer, TEXTS)
    calls = {}
    for name, change in [("count", {}), ("threshold", {"threshold": 0.02}), ("factor", {"factor": 3.0})]:
        events = []
        canvas = sample(sensitive, tiny_tokenizer, prompts, GREEDY.replace(**change), callback=events.append)
        assert not bool((canvas == tiny_tokenizer.mask_token_id).any())
        assert all(bool(event.committed.any()) for event in events)
        calls[name] = events[-1].calls
    assert calls["count"] == 24
    assert calls["threshold"] < 24 and calls["factor"] < 24


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"threshold": 0.0}, "threshold must be in (0, 1]"),
        ({"threshold": -0.5}, "threshold must be in (0, 1]"),
        ({"threshold": 1.5}, "threshold must be in (0, 1]"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"factor": 0.0}, "factor must be > 0"),
        ({"factor": -1.0}, "factor must be > 0"),
        ({"threshold": 0.9, "factor": 1.0}, "choose one"),
        ({"threshold": 0.9, "remasking": "random"}, "threshold decoding compares model confidences"),
        ({"factor": 1.0, "remasking": "random"}, "factor decoding compares model confidences"),
        ({"factor": 1.0, "stochastic_transfer": True}, "factor decoding replaces the transfer schedule"),
        ({"cache": "full"}, "unknown cache 'full'; choose one of: none, prefix, dual"),
        ({"cache": "dual", "refresh_every": 0}, "refresh_every must be an integer >= 1"),
        ({"refresh_every": 2}, "choose a cache too"),
    ],
)
def test_bad_fast_settings(change, complaint):
    with pytest.raises(DiffutronError) as error:
        GenerationConfig(**change)
    assert complaint in str(error.value)


def test_threshold_one_is_allowed():
    assert GenerationConfig(threshold=1.0).threshold == 1.0


def test_cache_with_a_model_that_is_not_modernbert(tiny_tokenizer):
    torch.manual_seed(0)
    bert = BertForMaskedLM(
        BertConfig(
            vocab_size=len(tiny_tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).eval()
    prompts = encode_prompts(tiny_tokenizer, TEXTS[:1])
    config = GenerationConfig(max_new_tokens=4, steps=4, block_length=4, temperature=0.0)
    with pytest.raises(DiffutronError, match="ModernBERT models only.*BertForMaskedLM.*cache='none'"):
        sample(bert, tiny_tokenizer, prompts, config.replace(cache="dual"))
    assert sample(bert, tiny_tokenizer, prompts, config.replace(threshold=0.5)).shape == (1, len(prompts[0]) + 4)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_infill_with_a_cache_and_parallel_decoding(tiny_tokenizer, sensitive, mode):
    """Infill blocks are scattered masks, not a contiguous span: the cache handles any positions."""
    lm = Diffutron(sensitive, tiny_tokenizer)
    config = GenerationConfig(block_length=3, temperature=0.0, threshold=0.02, cache=mode)
    filled = lm.infill("Kitap [MASK:4] güzel [MASK] Ankara [MASK:2]", config)
    assert filled.startswith("Kitap") and " güzel" in filled and " Ankara" in filled
    assert "<mask>" not in filled
    exact = lm.infill("Kitap [MASK:4] güzel [MASK] Ankara [MASK:2]", config.replace(refresh_every=1, threshold=None))
    assert exact == lm.infill(
        "Kitap [MASK:4] güzel [MASK] Ankara [MASK:2]", config.replace(cache="none", threshold=None)
    )
