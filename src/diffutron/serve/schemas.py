"""Request bodies of the OpenAI-compatible endpoints, with Diffutron's diffusion settings as extra fields.

Unknown fields are refused (400 naming the field), and so are OpenAI fields that mean nothing
for a masked diffusion model unless they carry their neutral value. Numbers are typed here;
their ranges are checked once, by `GenerationConfig`, when a request's settings are built.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from diffutron.errors import DiffutronError
from diffutron.model.tokens import check_unicode

MAX_SEED = 2**63 - 1
MAX_STOPS = 16  # stop strings per request (OpenAI allows 4)

# OpenAI fields with no meaning here: accepted only when null or equal to one of these values.
NEUTRAL_VALUES: dict[str, tuple[Any, ...]] = {
    "top_p": (1,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "tools": ([],),
    "tool_choice": ("none",),
    "functions": ([],),
    "function_call": ("none",),
    "parallel_tool_calls": (),
    "response_format": ({"type": "text"},),
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(_Strict):
    include_usage: bool = False
    include_denoising: bool = False  # extension: one chunk per model call with the canvas (docs/serving.md)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None  # accepted and ignored, as OpenAI servers do for plain chat

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)

    def as_turn(self) -> dict[str, str]:
        """The message as `render_chat` takes it (OpenAI's `developer` is the system role)."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class DiffusionSettings(_Strict):
    """The sampler's own settings (docs/fast-generation.md), sent as extra body fields."""

    steps: int | None = None
    block_length: int | None = None
    remasking: Literal["low_confidence", "random"] | None = None
    repetition_penalty: float | None = None
    penalty_scope: Literal["canvas", "generated"] | None = None
    cfg_scale: float | None = None
    stochastic_transfer: bool | None = None
    threshold: float | None = None
    factor: float | None = None
    cache: Literal["none", "prefix", "dual"] | None = None
    refresh_every: int | None = None
    speed: Literal["exact", "fast", "fastest"] | None = None
    temperature: float | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    user: str | None = None  # ignored

    @model_validator(mode="before")
    @classmethod
    def _refuse_meaningless_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, neutral in NEUTRAL_VALUES.items():
            if name in data and data[name] is not None and not any(_same(data[name], value) for value in neutral):
                raise PydanticCustomError(
                    "unsupported_parameter",
                    "{name} is not supported by this server (a masked diffusion model): leave it out",
                    {"name": name},
                )
        return {name: value for name, value in data.items() if name not in NEUTRAL_VALUES}

    @model_validator(mode="before")
    @classmethod
    def _refuse_invalid_unicode(cls, data: Any) -> Any:
        """A lone surrogate (an unpaired `\\ud800` escape) in any text is a 400 naming its field."""
        for path, text in _texts(data, ""):
            try:
                check_unicode(text, path)
            except DiffutronError as error:
                raise PydanticCustomError(
                    "invalid_unicode", "{message}", {"name": path, "message": str(error)}
                ) from None
        return data

    def sampler_settings(self) -> dict[str, Any]:
        """The GenerationConfig fields this request sets (speed and seed are handled apart)."""
        excluded = {"speed", "seed", "user", *_REQUEST_ONLY}
        return {name: value for name, value in self.model_dump(exclude=excluded).items() if value is not None}


class GenerationRequest(DiffusionSettings):
    """Fields shared by chat and text completions."""

    model: str
    max_tokens: int | None = None
    n: int = 1
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_texts(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(stop for stop in stops if stop)


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class InfillRequest(DiffusionSettings):
    model: str
    text: str


# request fields that are not sampler settings
_REQUEST_ONLY = {
    "model",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "stream",
    "stream_options",
    "messages",
    "prompt",
    "text",
}


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
