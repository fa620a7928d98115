"""`POST /tokenize` and `POST /detokenize` (vLLM's extensions): text to token ids and back.

They run on the request's own thread, not the model worker: the tokenizer is all they need.
By default `/tokenize` gives the ids generation feeds the model (no special tokens added);
`messages` are rendered as chat renders them, with the server's `--user-tags` rule.
"""

from __future__ import annotations

from diffutron.errors import DiffutronError
from diffutron.model.chat import ANSWER_START, render_chat
from diffutron.model.tokenize import detokenize, tokenize
from diffutron.serve.conversation import chat_turns
from diffutron.serve.errors import APIError
from diffutron.serve.limits import check_prompt_length
from diffutron.serve.responses import DetokenizeResponse, TokenizeResponse
from diffutron.serve.schemas import DetokenizeRequest, TokenizeRequest
from diffutron.serve.serving.base import Serving


class TokenizeServing(Serving):
    def tokenize(self, body: TokenizeRequest) -> TokenizeResponse:
        if body.model is not None:
            self.check_model(body.model)
        text, param = self.text(body)
        check_prompt_length(text, self.lm.context_length, param)
        tokenized = tokenize(
            self.lm.tokenizer,
            text,
            self.lm.context_length,
            add_special_tokens=body.add_special_tokens,
            token_strs=body.return_token_strs,
        )
        return TokenizeResponse.model_validate(tokenized.to_dict())

    def text(self, body: TokenizeRequest) -> tuple[str, str]:
        """The text to tokenize and the field it came from: the prompt, or the rendered conversation."""
        if (body.prompt is None) == (body.messages is None):
            raise APIError(
                400, "give either prompt (a text) or messages (a conversation)", param="prompt", code="invalid_value"
            )
        if body.prompt is not None:
            return body.prompt, "prompt"
        try:
            text = render_chat(chat_turns(body.messages or []), self.options.user_tags)
        except DiffutronError as error:
            raise APIError(400, str(error), param="messages", code="invalid_value") from error
        return (text if body.add_generation_prompt else text.removesuffix(ANSWER_START)), "messages"

    def detokenize(self, body: DetokenizeRequest) -> DetokenizeResponse:
        if body.model is not None:
            self.check_model(body.model)
        try:
            return DetokenizeResponse(prompt=detokenize(self.lm.tokenizer, body.tokens))
        except DiffutronError as error:
            raise APIError(400, str(error), param="tokens", code="invalid_value") from error
