"""The Diffutron chat format: plain-text tags, not special tokens (docs/reference-behaviour.md, section 2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from diffutron.errors import DiffutronError
from diffutron.model.tokens import check_unicode

SYSTEM_TAGS = ("[SYS]", "[/SYS]")
QUESTION_TAGS = ("[Question]", "[/Question]")
ANSWER_TAGS = ("[Answer]", "[/Answer]")
CHAT_TAGS = (*SYSTEM_TAGS, *QUESTION_TAGS, *ANSWER_TAGS)  # each one token in tokenizers trained here
ANSWER_END = ANSWER_TAGS[1]
ANSWER_START = f"{ANSWER_TAGS[0]}\n"

Message = Mapping[str, str]


def render_system(content: str) -> str:
    return f"{SYSTEM_TAGS[0]}\n{content.strip()}\n{SYSTEM_TAGS[1]}\n\n"


def render_question(content: str) -> str:
    return f"{QUESTION_TAGS[0]}\n{content.strip()}\n{QUESTION_TAGS[1]}\n\n"


def render_answer(content: str) -> str:
    return f"{ANSWER_START}{content.strip()}\n{ANSWER_END}\n\n"


def render_chat(messages: str | Sequence[Message]) -> str:
    """Render a conversation; a trailing user turn gets the generation prompt `[Answer]\\n`.

    `messages` is either the text of one user turn or a list of {"role", "content"} dicts
    with roles system (first only), user and assistant, alternating from a user turn.
    """
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence):
        raise DiffutronError(
            "give the question as text or a list of {'role': ..., 'content': ...} messages, got "
            f"{type(messages).__name__}"
        )
    if not messages:
        raise DiffutronError("the conversation is empty: give at least one user message")
    parts: list[str] = []
    expected = "user"
    for index, message in enumerate(messages):
        role, content = _unpack(message, index)
        if role == "system":
            if index != 0:
                raise DiffutronError("a system message may only come first in the conversation")
            parts.append(render_system(content))
            continue
        if role != expected:
            raise DiffutronError(
                f"message {index} has role {role!r} but {expected!r} was expected: turns must "
                "alternate user, assistant, user, ... (an optional system message first)"
            )
        if role == "user":
            if not content.strip():
                raise DiffutronError(f"message {index} (user) is empty: write a question")
            parts.append(render_question(content))
            expected = "assistant"
        else:
            parts.append(render_answer(content))
            expected = "user"
    if expected == "user" and not parts[-1].startswith(ANSWER_START):
        raise DiffutronError("the conversation has no user message")
    if expected == "assistant":
        parts.append(ANSWER_START)
    return "".join(parts)


def _unpack(message: Message, index: int) -> tuple[str, str]:
    try:
        role, content = message["role"], message["content"]
    except (KeyError, TypeError):
        raise DiffutronError(f"message {index} must be a mapping with 'role' and 'content', got {message!r}") from None
    if role not in ("system", "user", "assistant"):
        raise DiffutronError(f"message {index} has unknown role {role!r}; use system, user or assistant")
    if not isinstance(content, str):
        raise DiffutronError(f"message {index} content must be text, got {type(content).__name__}")
    return role, check_unicode(content, f"message {index} content")


def cut_answer(text: str) -> str:
    """The answer text: everything before the first `[/Answer]`, surrounding whitespace removed."""
    return text.split(ANSWER_END, 1)[0].strip()
