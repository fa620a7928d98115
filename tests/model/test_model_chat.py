"""The chat format of docs/reference-behaviour.md, section 2, byte for byte."""

from __future__ import annotations

import pytest

from diffutron.errors import DiffutronError
from diffutron.model.chat import cut_answer, render_chat


def test_single_turn():
    assert render_chat("  Merhaba? ") == "[Question]\nMerhaba?\n[/Question]\n\n[Answer]\n"


def test_multi_turn_with_system():
    messages = [
        {"role": "system", "content": "Kısa cevap ver."},
        {"role": "user", "content": "Başkent?"},
        {"role": "assistant", "content": " Ankara. "},
        {"role": "user", "content": "Ya İstanbul?"},
    ]
    assert render_chat(messages) == (
        "[SYS]\nKısa cevap ver.\n[/SYS]\n\n"
        "[Question]\nBaşkent?\n[/Question]\n\n[Answer]\nAnkara.\n[/Answer]\n\n"
        "[Question]\nYa İstanbul?\n[/Question]\n\n[Answer]\n"
    )


def test_every_message_is_stripped_system_included():
    messages = [
        {"role": "system", "content": "\n  Kısa cevap ver. \t"},
        {"role": "user", "content": " Başkent? \n"},
        {"role": "assistant", "content": "\nAnkara.  "},
        {"role": "user", "content": "  Ya İstanbul?"},
    ]
    assert render_chat(messages) == (
        "[SYS]\nKısa cevap ver.\n[/SYS]\n\n"
        "[Question]\nBaşkent?\n[/Question]\n\n[Answer]\nAnkara.\n[/Answer]\n\n"
        "[Question]\nYa İstanbul?\n[/Question]\n\n[Answer]\n"
    )


def test_finished_conversation_has_no_generation_prompt():
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert render_chat(messages) == "[Question]\na\n[/Question]\n\n[Answer]\nb\n[/Answer]\n\n"


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([], "empty"),
        ("   ", "empty"),
        ([{"role": "assistant", "content": "x"}], "expected"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}], "first"),
        ([{"role": "bot", "content": "a"}], "unknown role"),
        ([{"content": "a"}], "'role'"),
        ([{"role": "system", "content": "s"}], "no user message"),
    ],
)
def test_bad_conversations(messages, complaint):
    with pytest.raises(DiffutronError, match=complaint):
        render_chat(messages)


def test_cut_answer():
    assert cut_answer("Ankara'dır.\n[/Answer]\n\n[Question]") == "Ankara'dır."
    assert cut_answer("  yarım cevap ") == "yarım cevap"
