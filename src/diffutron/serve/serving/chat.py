"""`POST /v1/chat/completions`: a conversation rendered with the model's chat template, answered."""

from __future__ import annotations

from fastapi import Request, Response

from diffutron.serve.conversation import chat_prompt
from diffutron.serve.schemas import ChatCompletionRequest
from diffutron.serve.serving.generation import GenerationServing


class ChatServing(GenerationServing):
    chat = True

    async def create(self, body: ChatCompletionRequest, request: Request) -> Response:
        self.check_model(body.model)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        settings = self.settings(body, max_tokens)
        prompt = chat_prompt(body.messages, self.options.user_tags)
        return await self.answer(body, [self.prompt_ids(prompt, settings, "messages")], settings, request)
