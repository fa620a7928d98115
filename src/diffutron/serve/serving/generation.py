"""What chat and text completions share: prompts checked against the context, their rows as one work
item, and the answer sent whole or streamed as server-sent events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from diffutron.sampling.streams import row_seeds_for
from diffutron.serve.errors import APIError
from diffutron.serve.limits import check_answers, check_prompt_length, check_request_tokens
from diffutron.serve.responses import TOOL_CALLS, Echo, Format, server_sent_event, usage
from diffutron.serve.scheduler import Done, Dropped, Failed
from diffutron.serve.schemas import GenerationRequest
from diffutron.serve.serving.base import CLIENT_LEFT, ClientGone, Serving, Settings, outcome_error
from diffutron.serve.serving.decoding import Delta, Finished, Frame, GenerationWork, Row

# A stream's connection is not reused: a browser that cancels a reusable one may first read the rest of
# the body (Chromium drains it for reuse) and the server would go on decoding a row nobody waits for.
STREAM_HEADERS = {"Cache-Control": "no-cache", "Connection": "close"}


class GenerationServing(Serving):
    """The base of the chat and text completion serving classes."""

    chat: ClassVar[bool]  # chat.completion, else text_completion

    def prompt_ids(self, text: str, settings: Settings, param: str, suffix: int = 0, room: bool = True) -> list[int]:
        """Token ids of a prompt that, with the answer (and a suffix of `suffix` tokens), fits the model's
        context (`room`: max_tokens of it; a structured answer's skeleton is checked where it is laid out)."""
        if not text.strip():
            raise APIError(400, f"{param} is empty: give some text", param=param, code="invalid_value")
        check_prompt_length(text, self.lm.context_length, param)
        ids = self.lm.encode(text)
        if self.lm.special.mask in ids:
            raise APIError(
                400,
                f"{param} contains the mask token; to fill gaps inside a text use /v1/infill",
                param=param,
                code="invalid_value",
            )
        answer = settings.config.max_new_tokens if room else 0
        if len(ids) + answer + suffix > self.lm.context_length:
            sizes = (
                f"{len(ids)} tokens, max_tokens is {answer} and the suffix has {suffix} tokens"
                if suffix
                else f"{len(ids)} tokens and max_tokens is {answer}"
            )
            raise APIError(
                400,
                f"the prompt has {sizes}: together more than "
                f"the model's context of {self.lm.context_length} tokens; shorten the prompt or lower max_tokens",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def work(
        self,
        body: GenerationRequest,
        prompts: list[list[int]],
        settings: Settings,
        logprobs: int | None = None,
        suffix: tuple[int, ...] = (),
    ) -> GenerationWork:
        """The free answers' work: `rows`, each prompt with `suffix` within the request's token budget."""
        rows = self.rows(body, prompts, settings)
        max_tokens = settings.config.max_new_tokens
        lengths = [len(ids) + len(suffix) for ids in prompts]
        check_request_tokens(lengths, body.n, max_tokens, self.options.max_request_tokens)
        return GenerationWork(
            rows=rows,
            config=settings.config,
            deadline=self.deadline(),
            loop=self.loop(),
            stops=body.stop_texts(),
            stream=body.stream,
            denoising=body.denoising(),
            adapter=self.check_model(body.model),
            logprobs=logprobs,
            suffix=suffix,
        )

    def rows(self, body: GenerationRequest, prompts: list[list[int]], settings: Settings) -> list[Row]:
        """n rows per prompt, seeded seed, seed + 1, ... in choice order (as a seeded call's rows are)."""
        check_answers(body.n, len(prompts), self.options.max_batch_size)
        copies = [ids for ids in prompts for _ in range(body.n)]
        seeds = row_seeds_for(settings.seed, len(copies))
        return [Row(ids, row_seed, choice) for choice, (ids, row_seed) in enumerate(zip(copies, seeds))]

    async def answer(
        self,
        body: GenerationRequest,
        prompts: list[list[int]],
        settings: Settings,
        request: Request,
        *,
        logprobs: int | None = None,
        suffix: tuple[int, ...] = (),
        echoes: dict[int, Echo] | None = None,
    ) -> Response:
        """The answer to `prompts`: a whole response, or a stream when the request asks for one.

        `logprobs`: alternatives per answer token (None: no log-probabilities); `suffix`: token ids
        after each answer (fill in the middle); `echoes`: per choice, the prompt sent back before its answer.
        """
        work = self.work(body, prompts, settings, logprobs, suffix)
        output = Format(self.chat, body.model, logprobs is not None, echoes or {})  # the base's id or an adapter's
        return await self.respond(body, work, output, prompts, settings, request)

    async def respond(
        self,
        body: GenerationRequest,
        work: GenerationWork,
        output: Format,
        prompts: list[list[int]],
        settings: Settings,
        request: Request,
    ) -> Response:
        """Run `work`: a stream of server-sent events, or the whole response once it is done."""
        prompt_tokens = sum(len(ids) for ids in prompts)
        if work.stream:
            self.submit(work)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = self.stream(work, output, prompt_tokens, settings, include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers=STREAM_HEADERS)
        try:
            events, done = await self.collect(work, request)
        except ClientGone:
            return Response(status_code=CLIENT_LEFT)
        finished = [event for event in events if isinstance(event, Finished)]
        response = output.response(finished, usage(prompt_tokens, finished), settings.extension(done))
        return JSONResponse(response.to_json())

    async def stream(
        self, work: GenerationWork, output: Format, prompt_tokens: int, settings: Settings, include_usage: bool
    ) -> AsyncIterator[str]:
        """Server-sent events; a closed connection cancels this generator, which drops the item's rows."""
        finished: list[Finished] = []
        try:
            for chunk in output.start(len(work.rows)):
                yield server_sent_event(chunk)
            while True:
                try:
                    event = await self.next_event(work, None)
                except APIError as error:
                    yield server_sent_event(error.body())
                    break
                if isinstance(event, Delta):
                    yield server_sent_event(output.delta(event))
                elif isinstance(event, Frame):
                    yield server_sent_event(output.frame(event))
                elif isinstance(event, Finished):
                    finished.append(event)
                    if event.finish_reason == TOOL_CALLS:
                        yield server_sent_event(output.tool_calls(event))
                    yield server_sent_event(output.finish(event))
                elif isinstance(event, (Dropped, Failed)):
                    yield server_sent_event(outcome_error(event).body())
                    break
                elif isinstance(event, Done):
                    if include_usage:
                        yield server_sent_event(output.usage(usage(prompt_tokens, finished), settings.extension(event)))
                    break
            yield server_sent_event("[DONE]")
        finally:
            if not work.settled:
                self.scheduler.withdraw(work, "client_left")
