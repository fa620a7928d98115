"""The Diffutron chat format: plain-text tags, not special tokens (docs/reference-behaviour.md, section 2).

Because the tags are plain text, a user turn that contains one (`[/Question]`, `[SYS]`, ...) reads
to the model as the end of the question or the start of a system turn: a user can forge turns.
`render_chat(..., user_tags="escape")` or `"refuse"` stops that where user text is not trusted.

Tool calls have no tags of their own: an assistant turn that called a tool holds the call as JSON
(`tool_call_text`), and tool results are read to the model as a question turn (`tool_result_text`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

from diffutron.errors import DiffutronError
from diffutron.model.tokens import check_unicode

SYSTEM_TAGS = ("[SYS]", "[/SYS]")
QUESTION_TAGS = ("[Question]", "[/Question]")
ANSWER_TAGS = ("[Answer]", "[/Answer]")
CHAT_TAGS = (*SYSTEM_TAGS, *QUESTION_TAGS, *ANSWER_TAGS)  # each one token in tokenizers trained here
ANSWER_END = ANSWER_TAGS[1]
ANSWER_START = f"{ANSWER_TAGS[0]}\n"

Message = Mapping[str, str]
UserTags = Literal["keep", "escape", "refuse"]
USER_TAG_RULES: tuple[UserTags, ...] = ("keep", "escape", "refuse")
# a tag's square brackets become full-width ones: the text still reads as a tag to a person, not to the model
ESCAPED_BRACKETS = str.maketrans("[]", "\uff3b\uff3d")


def render_system(content: str) -> str:
    return f"{SYSTEM_TAGS[0]}\n{content.strip()}\n{SYSTEM_TAGS[1]}\n\n"


def render_question(content: str) -> str:
    return f"{QUESTION_TAGS[0]}\n{content.strip()}\n{QUESTION_TAGS[1]}\n\n"


def render_answer(content: str) -> str:
    return f"{ANSWER_START}{content.strip()}\n{ANSWER_END}\n\n"


def tool_call_text(name: str, arguments: object) -> str:
    """An assistant's call of the tool `name`: the JSON that structured output writes for a call."""
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def tool_result_text(name: str, content: str) -> str:
    """A tool's result as the model reads it, in the question turn after the call."""
    return f"{name} aracının sonucu:\n{content.strip()}"


def with_system_note(messages: str | Sequence[Message], note: str) -> list[Message]:
    """The conversation with `note` at the end of its system turn (a new one first if it has none)."""
    turns = [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
    if turns and isinstance(turns[0], Mapping) and turns[0].get("role") == "system":
        system = dict(turns[0])
        system["content"] = f"{str(system.get('content', '')).strip()}\n{note}".strip()
        return [system, *turns[1:]]
    return [{"role": "system", "content": note}, *turns]


def escape_tags(text: str) -> str:
    """`text` with every chat tag in it escaped (its brackets full-width), so it cannot open or close a turn."""
    for tag in CHAT_TAGS:
        text = text.replace(tag, tag.translate(ESCAPED_BRACKETS))
    return text


def render_chat(messages: str | Sequence[Message], user_tags: UserTags = "keep") -> str:
    """Render a conversation; a trailing user turn gets the generation prompt `[Answer]\\n`.

    `messages` is either the text of one user turn or a list of {"role", "content"} dicts
    with roles system (first only), user and assistant, alternating from a user turn. A `tool`
    message (its result as content, the tool's `name`) reads as a question (`tool_result_text`):
    consecutive tool messages, and a user message right after them, make one question turn.
    `user_tags` says what becomes of chat tags inside user turns: kept as they are (a user can
    then forge turns), escaped (`escape_tags`) or refused with an error.
    """
    if user_tags not in USER_TAG_RULES:
        raise DiffutronError(f"user_tags must be one of {', '.join(USER_TAG_RULES)}, got {user_tags!r}")
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence):
        raise DiffutronError(
            "give the question as text or a list of {'role': ..., 'content': ...} messages, got "
            f"{type(messages).__name__}"
        )
    if not messages:
        raise DiffutronError("the conversation is empty: give at least one user message")
    messages = _with_tool_results(messages)
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
            parts.append(render_question(_user_text(content, index, user_tags)))
            expected = "assistant"
        else:
            parts.append(render_answer(content))
            expected = "user"
    if expected == "user" and not parts[-1].startswith(ANSWER_START):
        raise DiffutronError("the conversation has no user message")
    if expected == "assistant":
        parts.append(ANSWER_START)
    return "".join(parts)


def _with_tool_results(messages: Sequence[Message]) -> Sequence[Message]:
    """Tool messages as user turns, merged with the tool messages and the user message that follow them."""
    if not any(isinstance(message, Mapping) and message.get("role") == "tool" for message in messages):
        return messages
    turns: list[Message] = []
    merging = False  # the last turn holds tool results: a tool or user message joins it
    for index, message in enumerate(messages):
        role, content = _unpack(message, index)
        if role == "tool":
            content = tool_result_text(str(message.get("name") or "tool"), content)
        if merging and role in ("tool", "user"):
            turns[-1] = {"role": "user", "content": f"{turns[-1]['content']}\n\n{content.strip()}"}
        else:
            turns.append({"role": "user" if role == "tool" else role, "content": content})
        merging = role == "tool"
    return turns


def _user_text(content: str, index: int, user_tags: UserTags) -> str:
    if user_tags == "escape":
        return escape_tags(content)
    if user_tags == "refuse" and (tag := next((tag for tag in CHAT_TAGS if tag in content), None)):
        raise DiffutronError(
            f"message {index} (user) contains the chat tag {tag}, which could forge a turn and is refused in "
            "user text here: leave it out"
        )
    return content


def _unpack(message: Message, index: int) -> tuple[str, str]:
    try:
        role, content = message["role"], message["content"]
    except (KeyError, TypeError):
        raise DiffutronError(f"message {index} must be a mapping with 'role' and 'content', got {message!r}") from None
    if role not in ("system", "user", "assistant", "tool"):
        raise DiffutronError(f"message {index} has unknown role {role!r}; use system, user, assistant or tool")
    if not isinstance(content, str):
        raise DiffutronError(f"message {index} content must be text, got {type(content).__name__}")
    return role, check_unicode(content, f"message {index} content")


def cut_answer(text: str) -> str:
    """The answer text: everything before the first `[/Answer]`, surrounding whitespace removed."""
    return text.split(ANSWER_END, 1)[0].strip()
