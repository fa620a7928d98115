"""The bounds of the server: what its options may be set to and how much work one request may ask for.

Every bound has its own refusal: an option out of range stops `diffutron serve` with one line
(exit status 2), a request above a bound gets a 400 that names the field and the number. The
limits table of docs/serving.md lists them. This module imports nothing heavy: the CLI reads the
option ranges from it for its help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffutron.errors import DiffutronError

# A prompt longer than this many characters per token of the model's context cannot fit it with
# any tokenizer whose tokens are shorter (the embedded one's longest token has 15 characters); it
# is refused before the tokenizer spends seconds on a megabyte of text.
PROMPT_CHARS_PER_TOKEN = 32
DEFAULT_MAX_REQUEST_TOKENS = 8192  # --max-request-tokens
DEFAULT_MAX_CONNECTIONS = 256  # --max-connections: well under the usual limit of 1024 open files
DEFAULT_READ_TIMEOUT_S = 10.0  # --read-timeout


@dataclass(frozen=True)
class Range:
    """The finite values a float option may take, from `low` to `high` (both included)."""

    low: float
    high: float
    unit: str

    def check(self, option: str, value: float) -> None:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not self.low <= value <= self.high:
            raise DiffutronError(
                f"{option} must be a number from {self.low:g} to {self.high:g} {self.unit}, got {value!r}"
            )


# the float options of `diffutron serve`
OPTION_RANGES = {
    "batch_wait_ms": Range(0, 10_000, "milliseconds"),
    "request_timeout": Range(0.1, 86_400, "seconds"),
    "read_timeout": Range(0.1, 3_600, "seconds"),
}


def check_float_options(**values: float) -> None:
    """Each float option within its range (a range check alone lets NaN through: this does not)."""
    for name, value in values.items():
        OPTION_RANGES[name].check(f"--{name.replace('_', '-')}", value)


def check_api_key(key: str | None) -> None:
    """A key a client can send: printable ASCII in an HTTP header, and no white space around it.

    Any other key would start the server and then refuse every request.
    """
    if key is None:
        return
    if not key.strip():
        raise DiffutronError("--api-key is empty: give a key, or leave it out to serve without one")
    if key != key.strip():
        raise DiffutronError("--api-key starts or ends with white space, which no client can send: remove it")
    position = next((index for index, char in enumerate(key) if not " " <= char <= "~"), None)
    if position is not None:
        raise DiffutronError(
            f"--api-key holds a character that is not printable ASCII (character {position + 1}); an HTTP header "
            "carries only those: choose a key of letters, digits and punctuation"
        )


def check_prompt_length(text: str, context_length: int, param: str) -> None:
    """A 400 for a prompt too long to fit the context whatever its tokens, before it is tokenized."""
    limit = PROMPT_CHARS_PER_TOKEN * context_length
    if len(text) > limit:
        raise _bad_request(
            f"{param} has {len(text)} characters, more than the {limit} this server reads for a model with a "
            f"context of {context_length} tokens: shorten it",
            param,
            "context_length_exceeded",
        )


def check_answers(n: int, prompts: int, max_batch_size: int) -> None:
    """A 400 unless the request's answers (n for each prompt) fit one batch."""
    if prompts > max_batch_size:
        raise _bad_request(
            f"prompt is a list of {prompts} prompts, more answers than this server decodes together "
            f"(--max-batch-size {max_batch_size}): send at most {max_batch_size}",
            "prompt",
        )
    most = max_batch_size // prompts
    if not 1 <= n <= most:
        per_prompt = f" for {prompts} prompts" if prompts > 1 else ""
        raise _bad_request(
            f"n must be between 1 and {most} here{per_prompt} (--max-batch-size {max_batch_size}), got {n}", "n"
        )


def check_request_tokens(prompt_lengths: list[int], n: int, max_tokens: int, limit: int) -> None:
    """A 400 when the request's answers, each its prompt plus max_tokens, would hold more than `limit` tokens."""
    total = n * sum(length + max_tokens for length in prompt_lengths)
    if total > limit:
        raise _bad_request(
            f"the request asks for {total} tokens (n = {n} answers per prompt, each its prompt plus max_tokens "
            f"{max_tokens}), more than this server's limit of {limit} (--max-request-tokens): ask for fewer",
            "n" if n > 1 else "max_tokens",
            "request_too_large",
        )


def _bad_request(message: str, param: str, code: str = "invalid_value") -> Exception:
    from diffutron.serve.errors import APIError  # FastAPI: not at import time (the CLI imports this module)

    return APIError(400, message, param=param, code=code)


def check_input_tokens(total: int, limit: int) -> None:
    """A 400 when a request's inputs to embed hold more than `limit` tokens in all."""
    if total > limit:
        raise _bad_request(
            f"the inputs hold {total} tokens, more than this server's limit of {limit} per request "
            "(--max-request-tokens): send fewer or shorter inputs",
            "input",
            "request_too_large",
        )
