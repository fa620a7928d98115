"""Structured output and tool calls over HTTP (docs/serving.md, "Structured output and tools").

A request's `response_format` and `tools` / `tool_choice` are read into its answer's `Shape`. A
structured answer is one `StructuredWork`: `sampling.structured` lays its skeleton out and fills
the slots; it runs alone (skeletons rarely share a canvas). With tool_choice "auto" a
`CallDecision` first reads the model's likelihood of calling a tool against answering.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from diffutron.errors import DiffutronError
from diffutron.sampling.frames import FrameBuilder
from diffutron.sampling.interrupt import Interrupted
from diffutron.sampling.sampler import StepEvent
from diffutron.sampling.structured import (
    Function,
    ResponseFormat,
    call_probability,
    response_format,
    structured_answers,
    tool_call_format,
)
from diffutron.sampling.structured.schema import ToolCall
from diffutron.sampling.structured.tools import tools_instruction
from diffutron.serve.errors import APIError
from diffutron.serve.responses import TOOL_CALLS, Format
from diffutron.serve.scheduler import Done, Event, Scheduler, WorkItem
from diffutron.serve.schemas import ChatCompletionRequest, GenerationRequest, NamedToolChoice
from diffutron.serve.serving.base import CLIENT_LEFT, ClientGone, Settings
from diffutron.serve.serving.decoding import Delta, Finished, Frame, GenerationWork, Row
from diffutron.serve.serving.generation import GenerationServing


@dataclass(frozen=True)
class Shape:
    """What a request's answer may be: a tool call (`call`), or an answer in the `answer` format (None:
    free text); with `auto` the model's likelihood picks between them, else a `call` is always made."""

    answer: ResponseFormat | None = None
    call: ResponseFormat | None = None
    auto: bool = False

    @property
    def free(self) -> bool:
        return self.answer is None and self.call is None

    def note(self) -> str | None:
        """What the system turn says: the tools, and the JSON instruction where the model may answer."""
        answers = self.call is None or self.auto
        formats = [self.call, self.answer if answers else None]
        return "\n".join(each.instruction for each in formats if each is not None) or None


FREE_ONLY = {"logprobs": "logprobs", "suffix": "suffix", "echoes": "echo"}  # answer()'s options: request fields


def check_free_only(free: dict[str, Any]) -> None:
    """Log-probabilities, a suffix and echo are for free answers: with response_format or tools, a 400."""
    for option, value in free.items():
        if value is not None and value != () and value is not False:
            field = FREE_ONLY[option]
            raise APIError(
                400,
                f"{field} is not available with response_format or tools: leave one of them out",
                param=field,
                code="unsupported_parameter",
            )


def request_shape(body: GenerationRequest) -> Shape:
    """The request's shape; a bad response_format or tool schema is a 400 naming what is wrong."""
    try:
        answer = response_format(body.response_format)
    except DiffutronError as error:
        raise APIError(400, str(error), param="response_format", code="invalid_value") from error
    if not isinstance(body, ChatCompletionRequest):
        return Shape(answer)
    call, auto = _tool_call(body)
    return Shape(answer, call, auto)


def _tool_call(body: ChatCompletionRequest) -> tuple[ResponseFormat | None, bool]:
    """The format of the request's tool call (None: no call) and whether it is tool_choice "auto"."""
    tools = body.tools or []
    choice = body.tool_choice if body.tool_choice is not None else ("auto" if tools else "none")
    if choice != "none" and not tools:
        raise _bad_tools("tool_choice asks for a tool call, but the request gives no tools", "tool_choice")
    functions = [Function(tool.function.name, tool.function.parameters, tool.function.description) for tool in tools]
    names = [function.name for function in functions]
    if len(set(names)) < len(names):
        raise _bad_tools(f"tools name a function twice: {names}", "tools")
    try:  # every schema is read, so an unsupported keyword is refused whichever function is called
        every = tool_call_format(functions)
    except DiffutronError as error:
        raise _bad_tools(str(error), "tools") from error
    if choice == "none":
        return None, False
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise _bad_tools(
                f"tool_choice names {choice.function.name!r}, which is not in tools {names}", "tool_choice"
            )
        index = names.index(choice.function.name)
        assert isinstance(every.node, ToolCall)
        named = ToolCall((every.node.functions[index],))
        return ResponseFormat(named, instruction=tools_instruction([functions[index]])), False
    return every, choice == "auto"


def _bad_tools(message: str, param: str) -> APIError:
    return APIError(400, message, param=param, code="invalid_value")


@dataclass(frozen=True)
class Decided(Event):
    """tool_choice "auto": the model's probability of calling a tool."""

    call_probability: float


@dataclass(eq=False, kw_only=True)
class CallDecision(WorkItem):
    """One model call: does the answer to `prompt` open with a tool call (`call_probability`)?"""

    shares_batches = False
    prompt: list[int]
    masks: int  # the free answer's masked positions

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        for item in batch:
            if isinstance(item, CallDecision):
                probability = call_probability(worker.lm.model, worker.lm.tokenizer, item.prompt, item.masks)
                worker.model_called()
                item.emit(Decided(probability))
                item.emit(Done(1, 1))


@dataclass(eq=False, kw_only=True)
class StructuredWork(GenerationWork):
    """Rows answered in `format` (a JSON answer or a tool call); with denoising frames, one row at a time."""

    shares_batches = False
    format: ResponseFormat
    tool_call: bool  # the answer is a call (finish_reason "tool_calls", streamed as a tool_calls delta)

    @property
    def batch_key(self) -> Hashable:
        return (StructuredWork, self.number)

    @classmethod
    def run(cls, batch: Sequence[WorkItem], worker: Scheduler) -> None:
        for item in batch:
            if isinstance(item, StructuredWork):
                item.fill(worker)

    def fill(self, worker: Scheduler) -> None:
        """Answer the rows (a seeded row's answer does not depend on its batch), then `Done`."""
        lm = worker.lm
        calls = 0
        frames = FrameBuilder(lm.tokenizer)

        def on_step(event: StepEvent, rows: list[Row]) -> None:
            nonlocal calls
            calls += 1
            worker.model_called()
            if worker.drop_reason(self):
                raise Interrupted("nobody waits for this structured answer")
            if self.denoising:
                [row] = rows
                region = range(len(row.prompt), event.canvas.shape[1])
                frame = frames.frame(event, 0, row.choice, region=region)
                frame["visible"] = list(frame["tokens"])  # the whole skeleton: a slot's padding shows as ""
                self.emit(Frame(row.choice, frame))

        for rows in [[row] for row in self.rows] if self.denoising else [self.rows]:
            texts = structured_answers(
                lm.model,
                lm.tokenizer,
                [row.prompt for row in rows],
                self.format.node,
                self.config,
                row_seeds=[row.seed for row in rows],
                callback=lambda event, rows=rows: on_step(event, rows),
            )
            for row, text in zip(rows, texts, strict=True):
                self.finish(worker, row, text)
        self.emit(Done(calls, 1 if self.denoising else len(self.rows)))

    def finish(self, worker: Scheduler, row: Row, text: str) -> None:
        tokens = len(worker.lm.encode(text))
        worker.metrics.generated_tokens.inc(tokens)
        if self.stream and not self.tool_call:  # a call is streamed as a tool_calls delta
            self.emit(Delta(row.choice, text))
        self.emit(Finished(row.choice, text, TOOL_CALLS if self.tool_call else "stop", tokens))


class StructuredServing(GenerationServing):
    """Chat and text completions that may answer in a JSON format or with a tool call."""

    async def shaped_answer(
        self,
        body: GenerationRequest,
        prompts: list[list[int]],
        settings: Settings,
        shape: Shape,
        request: Request,
        **free: Any,
    ) -> Response:
        """The answer in the request's shape: a tool call, a structured answer or (free) `answer`, which
        alone takes `free` (logprobs, suffix, echoes)."""
        if not shape.free:
            check_free_only(free)
        answer_format, tool_call = shape.answer, False
        try:
            if shape.call is not None and (
                not shape.auto or await self.calls_a_tool(body, prompts[0], settings, request)
            ):
                answer_format, tool_call = shape.call, True
        except ClientGone:
            return Response(status_code=CLIENT_LEFT)
        if answer_format is None:
            return await self.answer(body, prompts, settings, request, **free)
        work = self.structured_work(body, prompts, settings, answer_format, tool_call)
        output = Format(self.chat, body.model)  # the base model's id or an adapter's name
        return await self.respond(body, work, output, prompts, settings, request)

    async def calls_a_tool(
        self, body: GenerationRequest, prompt: list[int], settings: Settings, request: Request
    ) -> bool:
        """tool_choice "auto": a call if the model finds a call's opening at least as likely as any other start."""
        decision = CallDecision(
            prompt=prompt,
            masks=settings.config.max_new_tokens,
            deadline=self.deadline(),
            loop=self.loop(),
            adapter=self.check_model(body.model),
        )
        events, _ = await self.collect(decision, request)
        [decided] = [event for event in events if isinstance(event, Decided)]
        return decided.call_probability >= 1 - decided.call_probability  # calling against answering

    def structured_work(
        self,
        body: GenerationRequest,
        prompts: list[list[int]],
        settings: Settings,
        answer_format: ResponseFormat,
        tool_call: bool,
    ) -> StructuredWork:
        """n rows per prompt, seeded as free answers' rows are; the choices' likelihoods use the seed."""
        return StructuredWork(
            rows=self.rows(body, prompts, settings),
            config=settings.config.replace(seed=settings.seed),
            format=answer_format,
            tool_call=tool_call,
            deadline=self.deadline(),
            loop=self.loop(),
            stream=body.stream,
            denoising=body.denoising(),
            adapter=self.check_model(body.model),
        )
