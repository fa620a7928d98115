"""The MDLM continuation likelihood (docs/reference-behaviour.md, section 7) against direct
computations on a tiny model."""

from __future__ import annotations

import statistics

import pytest
import torch

from diffutron.errors import DiffutronError
from diffutron.eval.likelihood import ContinuationScorer, Pair, mask_sets
from helpers.likelihood import exact_bound
from helpers.stats import P_MIN, goodness_of_fit


def one_token_words(tokenizer, count=2):
    """Texts of a few characters that encode to exactly one token."""
    words = []
    for _token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        text = tokenizer.decode([index])
        if len(text) > 2 and tokenizer(text, add_special_tokens=False)["input_ids"] == [index]:
            words.append((text, index))
        if len(words) == count:
            return words
    raise AssertionError("the tiny tokenizer has no such words")


def test_one_token_continuation_is_scored_on_that_token(tiny_model, bos_eos_tokenizer):
    scorer = ContinuationScorer(tiny_model, bos_eos_tokenizer, mc_num=16)
    context = "Bugün hava çok güzel"
    context_ids = bos_eos_tokenizer(context, add_special_tokens=False)["input_ids"]
    assert bos_eos_tokenizer(context)["input_ids"][-1] == bos_eos_tokenizer.eos_token_id  # the trap exists
    scores = []
    for word, token in one_token_words(bos_eos_tokenizer):
        pair = scorer.encode(context, word)
        assert pair.context == tuple(context_ids) and pair.continuation == (token,)
        score = scorer.score([pair])[0]
        with torch.no_grad():
            logits = tiny_model(input_ids=torch.tensor([context_ids + [bos_eos_tokenizer.mask_token_id]])).logits[0, -1]
        assert score.logprob == pytest.approx(float(logits.float().log_softmax(-1)[token]), abs=1e-5)
        assert score.is_greedy == (int(logits.argmax()) == token)
        scores.append(score.logprob)
    assert scores[0] != scores[1]  # with the separator bug every one-token choice scored the same
    with torch.no_grad():
        best = int(
            tiny_model(input_ids=torch.tensor([context_ids + [bos_eos_tokenizer.mask_token_id]])).logits[0, -1].argmax()
        )
    assert scorer.score([Pair(tuple(context_ids), (best,))])[0].is_greedy


def test_short_continuations_are_exact(tiny_model, tiny_tokenizer):
    scorer = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=7, batch_size=5)  # 2^3 - 1 = 7 sets
    context = tuple(tiny_tokenizer("Kitap okumak insanın ufkunu", add_special_tokens=False)["input_ids"])
    pairs = [Pair(context, (41, 90)), Pair(context[:3], (41, 90, 73)), Pair((), (44, 294, 261))]
    expected = [exact_bound(tiny_model, tiny_tokenizer.mask_token_id, p.context, p.continuation) for p in pairs]
    assert [s.logprob for s in scorer.score(pairs)] == pytest.approx(expected, abs=1e-4)


def test_monte_carlo_estimate_is_centred_on_the_bound(tiny_model, tiny_tokenizer):
    pair = Pair(tuple(tiny_tokenizer("Güneş doğudan", add_special_tokens=False)["input_ids"]), (41, 90, 73, 88, 10, 11))
    exact = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=63, batch_size=64).score([pair])[0].logprob
    estimates = [
        ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=16, batch_size=64, seed=seed).score([pair])[0].logprob
        for seed in range(12)
    ]
    assert len(set(estimates)) > 1  # sampled, not enumerated
    assert statistics.mean(estimates) == pytest.approx(exact, rel=0.03)


def test_sampled_mask_sets_are_stratified():
    rows = mask_sets(10, 20, torch.Generator().manual_seed(3))
    sizes = [len(offsets) for offsets, _ in rows]
    assert sorted(sizes) == sorted([1 + (sizes[0] - 1 + (j * 10) // 20) % 10 for j in range(20)])
    assert sorted(set(sizes)) == list(range(1, 11))  # evenly spaced: every m twice
    assert all(len(set(offsets)) == len(offsets) and max(offsets) < 10 for offsets, _ in rows)
    assert [weight for _, weight in rows] == pytest.approx([10 / m / 20 for m in sizes])
    exact = mask_sets(3, 7, torch.Generator())
    assert len(exact) == 7 and sum(w * len(o) for o, w in exact) == pytest.approx(3.0)  # E[L/m * m] = L
    assert len(mask_sets(3, 6, torch.Generator().manual_seed(0))) == 6  # one row short of every set: sampled


def test_each_sampled_row_masks_a_uniform_number_of_positions():
    """m is uniform in 1..L for every row (docs/reference-behaviour.md, section 7): the evenly spaced
    values start at a uniform random point."""
    first_sizes = [len(mask_sets(5, 3, torch.Generator().manual_seed(seed))[0][0]) for seed in range(500)]
    assert goodness_of_fit(first_sizes, {m: 1 / 5 for m in range(1, 6)}) > P_MIN


def test_batching_padding_and_order_do_not_change_scores(tiny_model, tiny_tokenizer):
    encode = lambda text: tuple(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    pairs = [
        Pair(encode("Çocuklar bahçede"), encode(" top oynuyor")),
        Pair(encode("İstanbul Boğazı iki kıtayı birbirine"), encode(" bağlar")),
        Pair((), encode("Çay")),
        Pair(encode("Öğrenciler sınavdan önce"), encode(" düzenli çalışmalı. Kitap okumak insanın ufkunu genişletir")),
    ]
    alone = [ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=8, batch_size=1).score([p])[0] for p in pairs]
    together = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=8, batch_size=11).score(pairs)
    reversed_ = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=8, batch_size=6).score(pairs[::-1])[::-1]
    for one, batched, backwards in zip(alone, together, reversed_):
        assert batched.logprob == pytest.approx(one.logprob, abs=1e-4)
        assert backwards.logprob == pytest.approx(one.logprob, abs=1e-4)
    other_seed = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=8, seed=1).score(pairs[3:])[0]
    assert other_seed.logprob != pytest.approx(together[3].logprob, abs=1e-6)


def test_long_context_is_cut_from_the_left(tiny_model, tiny_tokenizer):
    scorer = ContinuationScorer(tiny_model, tiny_tokenizer, max_length=8)
    pair = scorer.fit(list(range(10, 20)), [30, 31, 32])
    assert pair == Pair((15, 16, 17, 18, 19), (30, 31, 32), truncated=True)
    assert scorer.score([pair])[0].truncated
    assert not scorer.fit([10, 11], [30]).truncated
    assert scorer.fit(list(range(10, 15)), [30, 31, 32]) == Pair((10, 11, 12, 13, 14), (30, 31, 32))  # just fits
    assert scorer.fit([10], list(range(8))) == Pair((), tuple(range(8)), truncated=True)
    with pytest.raises(DiffutronError, match="does not fit the model's window of 8"):
        scorer.fit([], list(range(9)))


def test_empty_continuation_defaults_and_bad_settings(tiny_model, tiny_tokenizer):
    scorer = ContinuationScorer(tiny_model, tiny_tokenizer)
    assert scorer.score([Pair((10, 11), ())])[0].logprob == 0.0
    assert (scorer.mc_num, scorer.check_greedy, scorer.max_length) == (128, False, 512)
    assert ContinuationScorer(tiny_model, tiny_tokenizer, max_length=1).max_length == 1
    with pytest.raises(DiffutronError, match="max_length must be >= 1"):
        ContinuationScorer(tiny_model, tiny_tokenizer, max_length=-1)
    for bad in ({"mc_num": 0}, {"batch_size": 0}, {"mc_num": 2.5}):
        with pytest.raises(DiffutronError, match="must be an integer >= 1"):
            ContinuationScorer(tiny_model, tiny_tokenizer, **bad)


def test_check_greedy_decodes_multi_token_continuations(tiny_model, tiny_tokenizer):
    from diffutron import GenerationConfig, sample

    context = tiny_tokenizer("Bugün hava", add_special_tokens=False)["input_ids"]
    config = GenerationConfig(
        max_new_tokens=3, steps=3, block_length=3, temperature=0.0, repetition_penalty=1.0, early_stop=False
    )
    greedy = sample(tiny_model, tiny_tokenizer, [context], config)[0, len(context) :].tolist()
    scorer = ContinuationScorer(tiny_model, tiny_tokenizer, check_greedy=True)
    other = [(greedy[0] + 1) % 300, *greedy[1:]]
    flags = [
        s.is_greedy for s in scorer.score([Pair(tuple(context), tuple(greedy)), Pair(tuple(context), tuple(other))])
    ]
    assert flags == [True, False]
    unchecked = ContinuationScorer(tiny_model, tiny_tokenizer).score(
        [Pair(tuple(context), tuple(greedy)), Pair(tuple(context), tuple(greedy[:2]))]
    )
    assert [s.is_greedy for s in unchecked] == [False, False]  # not claimed without the L-step check
    assert [s.truncated for s in unchecked] == [False, False]  # pairs built by hand are whole


def test_scoring_leaves_the_global_random_state_alone(tiny_model, tiny_tokenizer):
    state = torch.get_rng_state()
    ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=4).score([Pair((10, 11), (41, 90, 73, 88))])
    assert torch.equal(torch.get_rng_state(), state)


def test_many_requests_share_each_forward_pass(tiny_model, tiny_tokenizer):
    scorer = ContinuationScorer(tiny_model, tiny_tokenizer, mc_num=8, batch_size=4)
    shapes = []
    hidden = scorer.parts.hidden
    scorer.parts.hidden = lambda ids, mask: shapes.append(tuple(ids.shape)) or hidden(ids, mask)
    context = tuple(tiny_tokenizer("Bugün hava çok güzel", add_special_tokens=False)["input_ids"])
    options = [Pair(context, (token,)) for token in (37, 41, 44, 90)]  # one-token options: one input
    scores = scorer.score(options)
    assert shapes == [(1, len(context) + 1)]
    assert len({s.logprob for s in scores}) == 4
    shapes.clear()
    others = [Pair(context[:n], (41, 90)) for n in range(1, 5)]  # 4 requests x 3 mask sets
    scorer.score(others)
    assert [shape[0] for shape in shapes] == [4, 4, 4]
