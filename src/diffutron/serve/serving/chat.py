"""`POST /v1/chat/completions`: a conversation rendered with the model's chat template, answered."""

from __future__ import annotations

from fastapi import Request, Response

from diffutron.errors import DiffutronError
from diffutron.model.chat import render_chat
from diffutron.serve.errors import APIError
from diffutron.serve.schemas import ChatCompletionRequest
from diffutron.serve.serving.generation import GenerationServing


class ChatServing(GenerationServing):
    chat = True

    async def create(self, body: ChatCompletionRequest, request: Request) -> Response:
        self.check_model(body.model)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        settings = self.settings(body, max_tokens)
        try:
            prompt = render_chat([message.as_turn() for message in body.messages])
        except DiffutronError as error:
            raise APIError(400, str(error), param="messages", code="invalid_value") from error
        return await self.answer(body, [self.prompt_ids(prompt, settings, "messages")], settings, request)
