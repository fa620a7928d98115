"""Log-probabilities of the answer tokens: the distribution each was drawn from, at the call that committed it."""

from __future__ import annotations

import math

import pytest

from diffutron import Diffutron, DiffutronError, GenerationConfig
from diffutron.sampling.logprobs import MAX_TOP_LOGPROBS, ScoredAnswer, scored_positions
from diffutron.sampling.stopping import AnswerStops
from helpers.steered import favoured_logits

GREEDY = GenerationConfig(max_new_tokens=10, steps=5, block_length=5, temperature=0.0, early_stop=False)
FAVOURED = {10: 2.0, 11: 1.5, 12: 1.0, 13: 0.5}


@pytest.fixture(scope="module")
def lm(tiny_model, tiny_tokenizer):
    return Diffutron(tiny_model, tiny_tokenizer)


def test_a_greedy_answers_tokens_are_each_their_rows_maximum(lm):
    prompts = ["Kitap okumak", "Çay bugün"]
    plain = lm.generate(prompts, GREEDY, chat=False)
    scored = lm.generate(prompts, GREEDY, chat=False, logprobs=3)
    assert [answer.text for answer in scored] == plain  # the answers themselves do not change
    for answer in scored:
        assert isinstance(answer, ScoredAnswer) and len(answer.tokens) == 10
        assert lm.tokenizer.decode([token.token for token in answer.tokens]).strip() == answer.text
        for token in answer.tokens:
            values = [alternative.logprob for alternative in token.top]
            assert len(token.top) == 3 and values == sorted(values, reverse=True)
            assert (token.top[0].token, token.top[0].logprob) == (token.token, token.logprob)
            assert token.text == lm.tokenizer.decode([token.token]) and token.logprob < 0


def test_logprobs_are_of_the_tempered_truncated_distribution(tiny_tokenizer):
    """Fixed logits at temperature 0.5, top-k 3: every token's log-probability is log softmax(2 * logits)
    over the three kept tokens, and the alternatives are those three (the others were truncated away)."""
    lm = Diffutron(favoured_logits(len(tiny_tokenizer), FAVOURED), tiny_tokenizer)
    config = GenerationConfig(
        max_new_tokens=12, steps=3, block_length=12, temperature=0.5, top_k=3, repetition_penalty=1.0, seed=1
    )
    weights = {token: math.exp(FAVOURED[token] / 0.5) for token in (10, 11, 12)}
    expected = {token: math.log(weight / sum(weights.values())) for token, weight in weights.items()}
    (answer,) = lm.generate(["Kitap"], config, chat=False, logprobs=MAX_TOP_LOGPROBS)
    assert len(answer.tokens) == 12 and {token.token for token in answer.tokens} == {10, 11}  # 12 ranks low
    for token in answer.tokens:
        assert token.logprob == pytest.approx(expected[token.token], abs=1e-6)
        assert [alternative.token for alternative in token.top] == [10, 11, 12]
        assert [alternative.logprob for alternative in token.top] == pytest.approx(list(expected.values()), abs=1e-6)


def test_no_alternatives_with_zero(lm):
    (answer,) = lm.generate(["Kitap"], GREEDY, chat=False, logprobs=0)
    assert len(answer.tokens) == 10 and all(token.top == () for token in answer.tokens)


@pytest.mark.parametrize("bad", [-1, MAX_TOP_LOGPROBS + 1, True, 2.0, "3"])
def test_logprobs_out_of_range_is_refused(lm, bad):
    with pytest.raises(DiffutronError, match=f"logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}"):
        lm.generate(["Kitap"], GREEDY, chat=False, logprobs=bad)


def test_the_callback_still_sees_every_step(lm):
    events = []
    lm.generate(["Kitap"], GREEDY, chat=False, logprobs=2, callback=events.append)
    assert len(events) == 6 and all(event.logprobs is not None for event in events)
    committed = sum(int(event.committed.sum()) for event in events)
    reported = sum(int((~event.logprobs.logprob.isnan()).sum()) for event in events)
    assert reported == committed == 10


def test_scored_tokens_are_plain_numbers(lm):
    (answer,) = lm.generate(["Kitap"], GREEDY, chat=False, logprobs=2)
    numbers = [(token.token, token.logprob) for token in answer.tokens]
    numbers += [(other.token, other.logprob) for token in answer.tokens for other in token.top]
    assert numbers and all(type(token) is int and type(logprob) is float for token, logprob in numbers)


def test_an_answer_s_scored_tokens_end_at_its_end(tiny_tokenizer):
    """Up to the first mask or end token, and only the tokens wholly before a stop text."""

    def encode(text: str) -> list[int]:
        return tiny_tokenizer.encode(text, add_special_tokens=False)

    start = len(encode("Soru"))
    row = [*encode("Soru"), *encode("Kitap okumak güzel[/Answer] fazla"), tiny_tokenizer.mask_token_id]
    stops = AnswerStops.for_tokenizer(tiny_tokenizer)

    def scored(stops: AnswerStops, row: list[int], end: int) -> str:
        positions = scored_positions(tiny_tokenizer, stops, row, start, end)
        return tiny_tokenizer.decode(row[positions.start : positions.stop])

    assert scored_positions(tiny_tokenizer, stops, row, start, len(row)) == range(start, start + 16)
    assert scored(stops, row, len(row)) == "Kitap okumak güzel"
    assert scored(stops.with_texts(["güzel"]), row, len(row)) == "Kitap okumak"  # " g" reaches into the stop
    assert scored(stops, row, start + 3) == "Kit"
    ended = [*encode("Soru"), *encode("Kitap"), tiny_tokenizer.eos_token_id, *encode("okumak")]
    assert scored(stops, ended, len(ended)) == "Kitap"
    masked = [*encode("Soru"), *encode("Kitap"), tiny_tokenizer.mask_token_id, *encode("okumak")]
    assert scored(stops, masked, len(masked)) == "Kitap"
