"""The answer streamer: what it streams as the decided prefix grows joins to the answer, never past its end."""

from __future__ import annotations

from diffutron.model.chat import ANSWER_END
from diffutron.sampling.stopping import AnswerStops
from diffutron.sampling.streamer import AnswerStreamer

TEXT = "Bir şey olacak mı bilmem"
STOP = " olacak mı"  # ten tokens of the tiny tokenizer
PROMPT = [40, 41, 42]


def _encode(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _stream(tokenizer, stops, answer, length):
    """Decide `answer` (token ids) one token a call, left to right, in a region of `length`; the streamer's output."""
    mask = tokenizer.mask_token_id
    streamer = AnswerStreamer(tokenizer, stops, len(PROMPT), length)
    sent = []
    for decided in range(1, len(answer) + 1):
        row = [*PROMPT, *answer[:decided], *[mask] * (length - decided), 7]  # something after the region
        sent.append(streamer.put(row))
        if streamer.finished:
            break
    return streamer, sent


def test_a_partial_multi_token_stop_string_is_held_back(tiny_tokenizer):
    stops = AnswerStops.for_tokenizer(tiny_tokenizer, [STOP])
    ids = _encode(tiny_tokenizer, TEXT)
    streamer, sent = _stream(tiny_tokenizer, stops, ids, 30)
    assert (streamer.text, streamer.finish_reason) == ("Bir şey", "stop")
    assert len(sent) == 16  # ended at the stop's last token
    streamed = ["".join(sent[:count]) for count in range(1, len(sent) + 1)]
    assert all("Bir şey".startswith(text) for text in streamed), streamed
    assert sent[:8] == ["B", "ir", "", " ş", "e", "y", "", ""]  # the space waits: an answer is trimmed
    assert sent[8:] == [""] * 8  # " olacak m" could still be the stop: nothing of it is sent
    assert streamer.end([*PROMPT, *ids]) == ""  # already settled


def test_a_decided_end_tag_or_stop_token_ends_the_answer(tiny_tokenizer):
    stops = AnswerStops.for_tokenizer(tiny_tokenizer)
    ids = _encode(tiny_tokenizer, f"Bir şey{ANSWER_END} sonra")
    streamer, sent = _stream(tiny_tokenizer, stops, ids, 30)
    assert (streamer.text, streamer.finish_reason, "".join(sent)) == ("Bir şey", "stop", "Bir şey")
    assert len(sent) == len(_encode(tiny_tokenizer, f"Bir şey{ANSWER_END}"))
    with_eos = [*_encode(tiny_tokenizer, "Bir şey"), tiny_tokenizer.eos_token_id, *_encode(tiny_tokenizer, " x")]
    streamer, sent = _stream(tiny_tokenizer, stops, with_eos, 30)
    assert (streamer.text, streamer.finish_reason, "".join(sent), len(sent)) == ("Bir şey", "stop", "Bir şey", 7)


def test_a_full_region_without_an_end_is_cut_by_length(tiny_tokenizer):
    stops = AnswerStops.for_tokenizer(tiny_tokenizer, [STOP])
    ids = _encode(tiny_tokenizer, "Bir şey ol")
    streamer, sent = _stream(tiny_tokenizer, stops, ids, len(ids))
    assert (streamer.text, streamer.finish_reason) == ("Bir şey ol", "length")
    assert "".join(sent) == "Bir şey ol" and sent[-1] == " ol"  # the held-back part comes at the end


def test_end_settles_a_row_the_sampler_left_with_masks(tiny_tokenizer):
    stops = AnswerStops.for_tokenizer(tiny_tokenizer)
    mask, eos = tiny_tokenizer.mask_token_id, tiny_tokenizer.eos_token_id
    ids = _encode(tiny_tokenizer, "Bir şey [/An")
    streamer = AnswerStreamer(tiny_tokenizer, stops, len(PROMPT), 20)
    assert streamer.put([*PROMPT, *ids, *[mask] * (20 - len(ids))]) == "Bir şey"
    assert not streamer.finished
    assert streamer.end([*PROMPT, *ids, *[mask] * (20 - len(ids))]) == " [/An"
    assert (streamer.text, streamer.finish_reason) == ("Bir şey [/An", "length")
    ended = AnswerStreamer(tiny_tokenizer, stops, len(PROMPT), 20)
    assert ended.end([*PROMPT, *ids[:3], eos, *[mask] * 16]) == "Bir"
    assert (ended.text, ended.finish_reason) == ("Bir", "stop")
    unchanged = AnswerStreamer(tiny_tokenizer, stops, len(PROMPT), 20)
    row = [*PROMPT, *ids[:3], *[mask] * 17]
    assert unchanged.put(row) == "Bir" and unchanged.put(row) == "" and unchanged.decided == 3


def test_the_final_text_is_trimmed_and_special_tokens_read_as_no_text(tiny_tokenizer):
    stops = AnswerStops.for_tokenizer(tiny_tokenizer)
    mask, bos = tiny_tokenizer.mask_token_id, tiny_tokenizer.bos_token_id
    ids = _encode(tiny_tokenizer, "Bir şey ")
    streamer, sent = _stream(tiny_tokenizer, stops, ids, len(ids))  # the region ends on a space
    assert (streamer.text, streamer.finish_reason, "".join(sent)) == ("Bir şey", "length", "Bir şey")
    left = AnswerStreamer(tiny_tokenizer, stops, len(PROMPT), len(ids) + 2)
    assert left.end([*PROMPT, *ids, mask, mask]) == "Bir şey" and left.text == "Bir şey"
    special = [*ids[:2], bos, *ids[2:]]
    streamer, sent = _stream(tiny_tokenizer, stops, special, len(special))
    assert (streamer.text, "".join(sent)) == ("Bir şey", "Bir şey")
