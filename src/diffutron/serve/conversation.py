"""A chat request's messages as the model's prompt, or a 400 saying what is wrong with them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from diffutron.errors import DiffutronError
from diffutron.model.chat import Message, UserTags, render_chat, tool_call_text, with_system_note
from diffutron.serve.errors import APIError
from diffutron.serve.schemas import ChatMessage


def chat_prompt(messages: Sequence[ChatMessage], user_tags: UserTags, note: str | None = None) -> str:
    """The rendered conversation, which must end with a user (or tool) turn: that is the turn the model answers.

    A conversation that ends with an assistant turn has nothing to answer (the model would
    write after the finished answer, and say nothing); it is refused rather than guessed at.
    `note` (what structured output and tools tell the model) ends the system turn.
    """
    if messages and messages[-1].role == "assistant":
        raise APIError(
            400,
            f"the conversation ends with an assistant turn (message {len(messages) - 1}): end it with a user "
            "message, which the model answers",
            param="messages",
            code="invalid_value",
        )
    turns = chat_turns(messages)
    try:
        return render_chat(turns if note is None else with_system_note(turns, note), user_tags=user_tags)
    except DiffutronError as error:
        raise APIError(400, str(error), param="messages", code="invalid_value") from error


def chat_turns(messages: Sequence[ChatMessage]) -> list[Message]:
    """The messages as `render_chat` takes them: OpenAI's `developer` is the system role, an assistant's
    tool calls are written as calls (`tool_call_text`), a tool result names the tool it answers."""
    calls: dict[str, str] = {}  # tool call id -> function name
    turns: list[Message] = []
    for index, message in enumerate(messages):
        if message.content is None and not (message.role == "assistant" and message.tool_calls):
            raise APIError(
                400,
                f"messages.{index}.content is required (only an assistant message with tool_calls may leave it out)",
                param=f"messages.{index}.content",
                code="invalid_value",
            )
        if message.role == "tool":
            name = message.name or calls.get(message.tool_call_id or "", "tool")
            turns.append({"role": "tool", "content": message.text(), "name": name})
            continue
        content = message.text()
        for call in message.tool_calls or []:
            calls[call.id] = call.function.name
            content = f"{content}\n{tool_call_text(call.function.name, _arguments(call.function.arguments))}"
        turns.append({"role": "system" if message.role == "developer" else message.role, "content": content.strip()})
    return turns


def _arguments(text: str) -> object:
    """A call's arguments as JSON (their text as it is, if it is not JSON)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
