"""The live canvas view of `diffutron chat`: masks drawn as placeholders until committed."""

from __future__ import annotations

from diffutron import Diffutron, GenerationConfig
from diffutron.cli.chat_session import MASK_GLYPH, CanvasView


class Frames:
    """Stands in for rich's Live: keeps every frame the view draws."""

    def __init__(self):
        self.texts = []

    def update(self, renderable):
        self.texts.append(renderable)


def test_canvas_view_shows_masks_then_tokens(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    config = GenerationConfig(max_new_tokens=6, steps=6, block_length=6, temperature=0.0, early_stop=False)
    frames = Frames()
    lm.chat("Kitap ne demek?", config, callback=CanvasView(lm, frames, config.max_new_tokens))
    plain = [text.plain for text in frames.texts]
    assert [frame.count(MASK_GLYPH) for frame in plain] == [5, 4, 3, 2, 1, 0]
    assert plain[-1].endswith("[step 6]")
    highlighted = [[span for span in text.spans if span.style == "bold green"] for text in frames.texts]
    assert all(len(spans) == 1 for spans in highlighted)  # one new token per step, highlighted


def test_canvas_view_stops_drawing_where_the_answer_ends(tiny_model, tiny_tokenizer):
    from diffutron.model.chat import render_chat
    from helpers.steered import ForcedTokens

    question = "Kitap ne demek?"
    start = len(tiny_tokenizer(render_chat(question), add_special_tokens=False)["input_ids"])
    forced = [*tiny_tokenizer("Bir", add_special_tokens=False)["input_ids"], tiny_tokenizer.eos_token_id]
    lm = Diffutron(ForcedTokens(tiny_model, {(0, start + i): token for i, token in enumerate(forced)}), tiny_tokenizer)
    config = GenerationConfig(max_new_tokens=6, steps=6, block_length=6, temperature=0.0, early_stop=False)
    frames = Frames()
    answer = lm.chat(question, config, callback=CanvasView(lm, frames, config.max_new_tokens))
    plain = [text.plain for text in frames.texts]
    assert answer == "Bir"
    assert plain[-1] == "Bir\n[step 6]"  # nothing from the end token on
    # the forced tokens are committed first: once "Bir" and its end are decided, the rest is not drawn
    assert [text.count(MASK_GLYPH) for text in plain] == [5, 4, 0, 0, 0, 0]


class Script:
    """Types the given lines at the chat prompt, then Ctrl-D."""

    def __init__(self, *lines):
        self.lines = list(lines)

    def __call__(self, prompt):
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


def chat_output(lm, config, *lines, system=None):
    import io

    from rich.console import Console

    from diffutron.cli.chat_session import run_chat

    console = Console(file=io.StringIO(), width=200)
    asked = []
    script = Script(*lines)
    original = lm.chat
    lm.chat = lambda turn, settings, **kw: (asked.append(turn), original(turn, settings, **kw))[1]
    run_chat(lm, config, system=system, viz=False, console=console, ask=script)
    return console.file.getvalue(), asked


SHORT = GenerationConfig(max_new_tokens=4, steps=4, block_length=4, temperature=0.0)


def test_commands_do_not_reach_the_model_and_ignore_case(tiny_model, tiny_tokenizer):
    output, asked = chat_output(
        Diffutron(tiny_model, tiny_tokenizer), SHORT, "/help", "/HELP", "/Reset", "/nope", "/EXIT"
    )
    assert asked == []
    assert output.count("/reset") == 2 and "unknown command /nope" in output
    assert output.endswith("\n")


def test_a_line_ending_in_a_backslash_continues_the_message(tiny_model, tiny_tokenizer):
    _, asked = chat_output(Diffutron(tiny_model, tiny_tokenizer), SHORT, "ilk satır\\", "ikinci satır")
    assert asked[0][-1] == {"role": "user", "content": "ilk satır\nikinci satır"}


def test_user_text_is_printed_literally_not_as_markup(tiny_model, tiny_tokenizer):
    output, _ = chat_output(Diffutron(tiny_model, tiny_tokenizer), SHORT, "/[red]x[/red]")
    assert "unknown command /[red]x[/red]" in output


def test_old_turns_that_no_longer_fit_are_left_out_once_said(tiny_tokenizer):
    from helpers.tiny import build_model

    lm = Diffutron(build_model(tiny_tokenizer, max_positions=100), tiny_tokenizer)
    question = "Kitap okumak insanın ufkunu genişletir mi?"
    output, asked = chat_output(lm, SHORT, question, question, question, question)
    assert len(asked) == 4 and "error" not in output
    assert all(turn[-1]["content"] == question for turn in asked)
    assert len(asked[-1]) < 2 * 3 + 1  # not the whole history: the oldest turns were dropped
    assert output.count("left out") == 1


def test_a_message_that_cannot_fit_alone_is_an_error_and_an_overlong_system_fails_at_start(tiny_tokenizer):
    import pytest

    from diffutron.cli.chat_session import run_chat
    from diffutron.errors import DiffutronError
    from helpers.tiny import build_model

    lm = Diffutron(build_model(tiny_tokenizer, max_positions=100), tiny_tokenizer)
    output, asked = chat_output(lm, SHORT, "çok " * 100)
    assert asked == [] and "does not fit the model's context of 100 tokens" in output
    with pytest.raises(DiffutronError, match="does not fit"):
        run_chat(lm, SHORT, system="uzun " * 100, viz=False, console=None, ask=Script())


def test_save_animation_draws_the_last_answer(tiny_model, tiny_tokenizer, tmp_path):
    from PIL import Image

    target = tmp_path / "answer.gif"
    output, asked = chat_output(
        Diffutron(tiny_model, tiny_tokenizer),
        SHORT,
        f"/save-animation {target}",
        "Kitap ne demek?",
        f"/save-animation {target}",
        f"/save-animation {target}",
    )
    assert len(asked) == 1
    assert "no answer to draw yet" in output and "already exists" in output
    with Image.open(target) as image:
        assert image.n_frames == 4  # one frame per model call: 4 steps


def test_save_animation_to_a_place_that_cannot_be_written_keeps_the_chat(tiny_model, tiny_tokenizer, tmp_path):
    target = "/sys/diffutron-test-output/answer.gif"  # sysfs: no new entries, not even for root
    output, asked = chat_output(
        Diffutron(tiny_model, tiny_tokenizer), SHORT, "Kitap ne demek?", f"/save-animation {target}", "Çay?"
    )
    said = " ".join(output.split())
    assert f"error: cannot write {target}: /sys is not writable" in said
    assert len(asked) == 2 and said.count("diffutron>") == 2  # the conversation went on
    assert asked[1][-3]["content"] == "Kitap ne demek?"  # with its history
