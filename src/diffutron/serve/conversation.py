"""A chat request's messages as the model's prompt, or a 400 saying what is wrong with them."""

from __future__ import annotations

from collections.abc import Sequence

from diffutron.errors import DiffutronError
from diffutron.model.chat import UserTags, render_chat
from diffutron.serve.errors import APIError
from diffutron.serve.schemas import ChatMessage


def chat_prompt(messages: Sequence[ChatMessage], user_tags: UserTags) -> str:
    """The rendered conversation, which must end with a user turn: that is the turn the model answers.

    A conversation that ends with an assistant turn has nothing to answer (the model would
    write after the finished answer, and say nothing); it is refused rather than guessed at.
    """
    if messages and messages[-1].role == "assistant":
        raise APIError(
            400,
            f"the conversation ends with an assistant turn (message {len(messages) - 1}): end it with a user "
            "message, which the model answers",
            param="messages",
            code="invalid_value",
        )
    try:
        return render_chat([message.as_turn() for message in messages], user_tags=user_tags)
    except DiffutronError as error:
        raise APIError(400, str(error), param="messages", code="invalid_value") from error
