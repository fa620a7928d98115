"""Request bodies of the OpenAI-compatible endpoints, with Diffutron's diffusion settings as extra fields.

Unknown fields are refused (400 naming the field), and so are OpenAI fields that mean nothing
for a masked diffusion model unless they carry their neutral value. The diffusion settings are
derived from `GenerationConfig`'s fields; their ranges are checked once, by `GenerationConfig`,
when a request's settings are built.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from diffutron.errors import DiffutronError
from diffutron.model.tokens import check_unicode
from diffutron.sampling.config import MAX_SEED, Setting, choices, default, field_type, settings
from diffutron.sampling.logprobs import MAX_TOP_LOGPROBS
from diffutron.sampling.presets import SPEEDS

# seeds drawn for requests without one: below 2**53, so that any JSON parser (a browser's) reads them exactly
DRAWN_SEEDS = 2**53
MAX_STOPS = 16  # stop strings per request (OpenAI allows 4)
MAX_COMPLETION_LOGPROBS = 5  # alternatives per token on /v1/completions, as OpenAI's legacy endpoint allows

# OpenAI fields with no meaning here: accepted only when null or equal to one of these values
# (a request class that implements some of them leaves those out of its `refused`).
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "functions": ([],),
    "function_call": ("none",),
    "best_of": (1,),
    "echo": (False,),
    "suffix": ("",),
    "audio": (),
    "modalities": (["text"],),
    "prediction": (),
    "reasoning_effort": (),
    "service_tier": (),
    "store": (False,),
    "metadata": ({},),
    "web_search_options": (),
}


def _without(fields: dict[str, tuple[Any, ...]], *names: str) -> dict[str, tuple[Any, ...]]:
    return {name: values for name, values in fields.items() if name not in names}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _TextChecked(_Strict):
    """A request whose texts are checked for lone surrogates (a 400 naming the field)."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_invalid_unicode(cls, data: Any) -> Any:
        return _checked_unicode(data)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_denoising: bool = False  # extension: one chunk per model call with the canvas (docs/serving.md)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCall(_Strict):
    name: str
    arguments: str  # JSON text


class ToolCallRecord(_Strict):
    """A tool call of an earlier assistant message in the history."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None  # None only for an assistant message with tool_calls
    name: str | None = None  # ignored as OpenAI servers do, but in a tool message: the tool it answers for
    tool_calls: list[ToolCallRecord] | None = None  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    refusal: str | None = None  # in assistant messages the official client sends back; ignored

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


def _request_field(name: str, setting: Setting) -> tuple[Any, Any]:
    """A `GenerationConfig` field as an optional request field: its type and choices (the ranges are
    checked by `GenerationConfig`, whose errors name the field; the seed's are pydantic's)."""
    options = choices(name)
    kind = Literal[options] if options is not None else field_type(name)
    bounds = {"ge": 0, "le": MAX_SEED} if name == "seed" else {}
    return kind | None, Field(default=None, description=setting.help, **bounds)


_Settings = create_model(
    "_Settings",
    __base__=_TextChecked,
    **{name: _request_field(name, setting) for name, setting in settings().items() if setting.http},
)


class DiffusionSettings(_Settings):
    """The sampler's own settings (docs/fast-generation.md), sent as extra body fields: every
    `GenerationConfig` field but those OpenAI's own fields carry (max_tokens) or that mean nothing
    to a server (early_stop, truncate); and the speed preset."""

    refused: ClassVar[dict[str, tuple[Any, ...]]] = NEUTRAL_VALUES
    speed: Literal[SPEEDS] | None = None  # type: ignore[valid-type]
    user: str | None = None  # ignored

    @model_validator(mode="before")
    @classmethod
    def _refuse_meaningless_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, neutral in cls.refused.items():
            if name in data and data[name] is not None and not any(_same(data[name], value) for value in neutral):
                raise PydanticCustomError(
                    "unsupported_parameter",
                    "{name} is not supported by this server (a masked diffusion model): leave it out",
                    {"name": name},
                )
        return {name: value for name, value in data.items() if name not in cls.refused}

    def sampler_settings(self) -> dict[str, Any]:
        """The GenerationConfig fields this request sets (the seed is handled apart)."""
        return {
            name: getattr(self, name)
            for name, setting in settings().items()
            if setting.http and name != "seed" and getattr(self, name) is not None
        }


class GenerationRequest(DiffusionSettings):
    """Fields shared by chat and text completions."""

    model: str
    # {"type": "text" | "json_object" | "json_schema", ...}: read by `diffutron.sampling.structured`
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_texts(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(stop for stop in stops if stop)

    def denoising(self) -> bool:
        """Whether the stream also carries the canvas after every model call (an extension)."""
        return bool(self.stream and self.stream_options and self.stream_options.include_denoising)


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of the structured output subset
    strict: bool | None = None  # calls always keep to the schema


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(GenerationRequest):
    refused: ClassVar[dict[str, tuple[Any, ...]]] = _without(NEUTRAL_VALUES, "logprobs", "top_logprobs")
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None  # each answer token's log-probability at the call that committed it
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)  # alternatives per token
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # an answer holds at most one call either way


class CompletionRequest(GenerationRequest):
    refused: ClassVar[dict[str, tuple[Any, ...]]] = _without(NEUTRAL_VALUES, "logprobs", "echo", "suffix")
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)  # alternatives per token
    echo: bool = False  # the prompt before the answer (never the suffix)
    suffix: str | None = None  # the text after the answer: fill in the middle

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class InfillRequest(DiffusionSettings):
    model: str
    text: str


class EmbeddingRequest(_TextChecked):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None  # only the model's own hidden size
    user: str | None = None  # ignored


class TokenizeRequest(_TextChecked):
    """vLLM's `/tokenize` body: a `prompt` as it is, or `messages` in the chat format."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = False  # the ids generation feeds the model add none
    add_generation_prompt: bool = True  # messages: end with the answer prompt, as chat feeds them
    return_token_strs: bool = False


class DetokenizeRequest(_Strict):
    """vLLM's `/detokenize` body."""

    model: str | None = None
    tokens: list[int]


def _checked_unicode(data: Any) -> Any:
    """`data`, if no text in it holds a lone surrogate (an unpaired `\\ud800` escape); otherwise a 400
    naming the text's field."""
    for path, text in _texts(data, ""):
        try:
            check_unicode(text, path)
        except DiffutronError as error:
            raise PydanticCustomError("invalid_unicode", "{message}", {"name": path, "message": str(error)}) from None
    return data


def _texts(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, with its path as errors name fields (messages.0.content)."""
    if isinstance(value, str):
        yield path or "the body", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}.{index}")


def _same(given: Any, neutral: Any) -> bool:
    """Equal and of a comparable type (so that `true` does not pass for 1)."""
    return (
        type(given) is type(neutral)
        and given == neutral
        or (
            isinstance(given, (int, float))
            and not isinstance(given, bool)
            and isinstance(neutral, (int, float))
            and given == neutral
        )
    )


def page_settings() -> dict[str, Any]:
    """The chat page's settings form, described from `GenerationConfig` (the page keeps no copy):
    each request field's type, default, range, choices and help, and the speed presets."""
    fields: dict[str, Any] = {}
    for name, setting in settings().items():
        if setting.http or name == "max_new_tokens":
            fields["max_tokens" if name == "max_new_tokens" else name] = _describe(name, setting)
    return {"fields": fields, "speeds": list(SPEEDS)}


def _describe(name: str, setting: Setting) -> dict[str, Any]:
    kind = field_type(name)
    types = {int: "integer", float: "number", bool: "boolean"}
    maximum = setting.cap if setting.cap is not None else setting.maximum
    if isinstance(maximum, int) and maximum > DRAWN_SEEDS:
        maximum = str(maximum)  # beyond JavaScript's exact integers (the seed's 2**64 - 1): sent as digits
    described = {
        "type": "object" if typing.get_origin(kind) is Mapping else types.get(kind, "string"),
        "default": default(name),
        "help": setting.help,
        "minimum": setting.minimum,
        "exclusive_minimum": setting.open_minimum,
        "maximum": maximum,
        "choices": list(choices(name) or []) or None,
    }
    return {key: value for key, value in described.items() if value is not None}
