"""Where an answer ends (`AnswerStops`), on the tiny tokenizer: the cut, the streamable part, the visible positions
and the decoder's stopper with a row's own stop strings."""

from __future__ import annotations

import pytest

from diffutron import Diffutron, GenerationConfig
from diffutron.model.chat import ANSWER_END, render_chat
from diffutron.sampling.sampler import Decoder, build_canvas
from diffutron.sampling.stopping import AnswerEnd, AnswerStops

TEXT = "Bir şey olacak mı bilmem"
STOP = " olacak mı"  # ten tokens of the tiny tokenizer


@pytest.fixture
def stops(tiny_tokenizer):
    return AnswerStops.for_tokenizer(tiny_tokenizer)


def _encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_the_chat_end_and_the_stop_tokens_come_from_the_tokenizer(stops, tiny_tokenizer):
    assert stops.stop_texts == (ANSWER_END,)
    assert stops.stop_ids == {tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id}
    assert stops.mask_id == tiny_tokenizer.mask_token_id
    assert stops.with_texts([STOP, ANSWER_END, STOP]).stop_texts == (ANSWER_END, STOP)
    assert AnswerStops().stop_texts == (ANSWER_END,) and AnswerStops().stop_ids == frozenset()


def test_the_earliest_stop_text_cuts(stops):
    both = stops.with_texts(["cak", "şey"])
    assert both.cut(f"Bir şey olacak{ANSWER_END}") == ("Bir ", True)
    assert both.cut("Bir şe") == ("Bir şe", False)
    assert stops.cut(f"{ANSWER_END}Bir") == ("", True)  # an empty answer
    assert stops.cut("Bir şey") == ("Bir şey", False)


def test_read_and_answer_stop_at_the_first_mask_then_the_first_stop_token_then_the_text(stops, tiny_tokenizer):
    ids = _encode(tiny_tokenizer, TEXT)
    mask, eos, pad = tiny_tokenizer.mask_token_id, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    decode = lambda tokens: tiny_tokenizer.decode(tokens, skip_special_tokens=True)  # noqa: E731
    assert stops.read(decode, ids) == (TEXT, False)
    assert stops.read(decode, [*ids[:6], mask, *ids[7:]]) == ("Bir şey", False)  # masked: not ended
    assert stops.read(decode, [*ids[:7], pad, *ids[7:], eos]) == ("Bir şey ", True)
    assert stops.read(decode, [*ids[:7], mask, eos]) == ("Bir şey ", False)  # the stop token is not decided
    with_tag = _encode(tiny_tokenizer, f"Bir şey{ANSWER_END} olacak")
    assert stops.read(decode, with_tag) == ("Bir şey", True)
    assert stops.with_texts([STOP]).read(decode, ids) == ("Bir şey", True)
    assert stops.answer(tiny_tokenizer, [*ids[:7], eos, *ids[7:]]) == "Bir şey"
    assert stops.answer(tiny_tokenizer, [eos, *ids]) == ""
    bos = tiny_tokenizer.bos_token_id  # a special token that does not end the answer reads as no text
    assert stops.answer(tiny_tokenizer, [*ids[:2], bos, *ids[2:7]]) == "Bir şey"


def test_streamable_holds_back_a_stop_text_in_the_making_and_an_unfinished_character(stops):
    request = stops.with_texts([STOP])
    assert request.streamable("Bir şey ol") == "Bir şey"
    assert request.streamable("Bir şey o") == "Bir şey"
    assert request.streamable("Bir şey olacak m") == "Bir şey"
    assert request.streamable("Bir şey oldu") == "Bir şey oldu"  # no longer a stop in the making
    assert stops.streamable("Bir şey [/Ans") == "Bir şey "
    assert stops.streamable("Bir [") == "Bir "
    assert stops.streamable("Bir şey\ufffd") == "Bir şey"
    assert stops.streamable("Bir şey") == "Bir şey"


def test_visible_positions_end_at_a_decided_stop_token_or_text(stops, tiny_tokenizer):
    eos, mask = tiny_tokenizer.eos_token_id, tiny_tokenizer.mask_token_id
    pieces = ["Bir", " şey", "", " fazla", None]
    ids = [10, 11, eos, 12, mask]
    assert stops.visible(pieces, ids) == ["Bir", " şey"]
    assert stops.visible(pieces) == pieces  # from the texts alone the end is not known
    assert stops.visible(["Bir", None, ""], [10, mask, eos]) == ["Bir", None, ""]  # the end is not decided
    assert stops.visible(["Bir ", " ", "", None], [10, 11, eos, mask]) == ["Bir"]  # trailing blanks trimmed
    tagged = ["Bir", " şey", ".\n[/", "Answer", "]", " sonra", None]
    assert stops.visible(tagged) == ["Bir", " şey", "."]
    assert stops.visible(["[/Answer]", "x"]) == []
    assert stops.with_texts([" şey"]).visible(pieces, ids) == ["Bir"]
    assert stops.with_texts(["ir"]).visible(["B", "ir", " şey"]) == ["B"]


def test_the_stopper_ends_each_row_at_its_own_stop_strings(tiny_tokenizer):
    eos, mask = tiny_tokenizer.eos_token_id, tiny_tokenizer.mask_token_id
    default = AnswerStops.for_tokenizer(tiny_tokenizer)
    stopper = AnswerEnd(tiny_tokenizer, mask, default.stop_ids, default.stop_texts)
    stopper.add(1)
    stopper.add(2, [default.with_texts([STOP]), default.with_texts(["bilmem"])])
    ids = _encode(tiny_tokenizer, TEXT)
    assert stopper.update([ids[:8] + [mask] * 14] * 3) == [False, False, False]  # " o": the stop not yet there
    assert stopper.update([ids[:15] + [mask] * 7] * 3) == [False, False, False]  # " olacak m"
    assert stopper.update([ids[:16] + [mask] * 6] * 3) == [False, True, False]
    assert stopper.update([ids] * 3) == [False, True, True]
    stopper.keep([0, 2])
    assert stopper.done == [False, True] and [row.stop_texts for row in stopper.rows] == [
        (ANSWER_END,),
        (ANSWER_END, "bilmem"),
    ]
    stopper.add(1)  # a joining row: a decided stop token ends it
    assert stopper.update([ids, ids, [*ids[:3], eos, *[mask] * 18]]) == [False, True, True]


def test_a_request_stop_string_ends_its_row_in_the_decoder(tiny_model, tiny_tokenizer):
    """With early stopping the decoder stops a row at its own stop strings, without any reader."""
    lm = Diffutron(tiny_model, tiny_tokenizer)
    # blocks of one token: the decided prefix grows by one each call
    config = GenerationConfig(max_new_tokens=24, steps=24, block_length=1, temperature=0.0)
    prompt = lm.encode(render_chat("Kitap ne demek?"))
    canvas = build_canvas([prompt], config.max_new_tokens, lm.special, lm.device)
    full = Decoder(lm.model, lm.tokenizer, config, masks=config.max_new_tokens, stop_texts=(ANSWER_END,))
    full.add(canvas, [None])
    while full.step():
        pass
    answer = lm.answer(full.canvas[0].tolist(), len(prompt))
    assert len(answer) > 4, answer
    stop = answer[2:4]
    stopped = Decoder(lm.model, lm.tokenizer, config, masks=config.max_new_tokens, stop_texts=(ANSWER_END,))
    stopped.add(canvas.repeat(2, 1), [None, None], [lm.answer_stops, lm.answer_stops.with_texts([stop])])
    calls = []
    while stopped.step(lambda event: calls.append(event.finished.tolist())):
        pass
    assert calls[-1] == [True, True] and [True, False] not in calls  # the row with the stop ends first
    assert len(calls) == 24 and calls.index([False, True]) == 1  # the stop is in the first two tokens
    rows = stopped.canvas.tolist()
    assert (
        lm.answer_stops.with_texts([stop]).answer(lm.tokenizer, rows[1][len(prompt) :]) == answer.split(stop)[0].strip()
    )
