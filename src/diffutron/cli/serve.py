"""`diffutron serve`: an OpenAI-compatible HTTP server for a model (docs/serving.md)."""

from typing import Annotated, Literal, Optional

import typer

from diffutron.cli.console import errors, say
from diffutron.cli.options import DeviceOption, DtypeOption, ModelOption
from diffutron.sampling.presets import SPEEDS
from diffutron.serve.limits import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_TOKENS,
    DEFAULT_READ_TIMEOUT_S,
    OPTION_RANGES,
)

SERVER_PANEL = "Server"
LIMITS_PANEL = "Batching and limits"


def _limit(option: str, help: str) -> typer.models.OptionInfo:
    """A float option of the limits panel, within its range (serve/limits.py; NaN fails the range too)."""
    bound = OPTION_RANGES[option]
    return typer.Option(min=bound.low, max=bound.high, help=help, rich_help_panel=LIMITS_PANEL)


def _at_least_one(help: str) -> typer.models.OptionInfo:
    """A count of the limits panel, 1 or more."""
    return typer.Option(min=1, help=help, rich_help_panel=LIMITS_PANEL)


def _server(help: str, *names: str) -> typer.models.OptionInfo:
    """An option of the server panel."""
    return typer.Option(*names, help=help, rich_help_panel=SERVER_PANEL)


SpeedOption = Annotated[Literal[SPEEDS], typer.Option(help="Default settings: exact is the model card's output.")]
HostOption = Annotated[str, _server("Address to listen on; 0.0.0.0 opens the server to the network.")]
PortOption = Annotated[
    int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.", rich_help_panel=SERVER_PANEL)
]
ServedModelNameOption = Annotated[Optional[str], _server("The model id clients send (default: from --model).")]
ApiKeyOption = Annotated[
    Optional[str],
    typer.Option(
        envvar="DIFFUTRON_API_KEY",
        help="Require 'Authorization: Bearer KEY' (not on the page, /health, /metrics).",
        rich_help_panel=SERVER_PANEL,
    ),
]
MaxBatchSizeOption = Annotated[int, _at_least_one("Most answers decoded together in one batch.")]
BatchWaitOption = Annotated[float, _limit("batch_wait_ms", "Longest wait for more requests to fill a batch.")]
MaxQueueOption = Annotated[int, _at_least_one("Requests allowed to wait; more get a 429.")]
RequestTimeoutOption = Annotated[float, _limit("request_timeout", "Seconds before an unanswered request gets a 504.")]
MaxRequestTokensOption = Annotated[
    int, _at_least_one("Most tokens one request may ask for: n x (prompt + max_tokens).")
]
MaxConnectionsOption = Annotated[int, _at_least_one("Open connections allowed; requests on more get a 503.")]
ReadTimeoutOption = Annotated[
    float, _limit("read_timeout", "Seconds a client has to send a whole request; slower ones are disconnected.")
]
AllowedHostOption = Annotated[
    Optional[list[str]],
    _server("A host name clients may use besides IP addresses and localhost (repeatable; '*': any)."),
]
OpenapiOption = Annotated[bool, _server("Serve the API's schema at /openapi.json (behind the key).", "--openapi")]
UserTagsOption = Annotated[
    Literal["keep", "escape", "refuse"], _server("Chat tags typed in user messages: keep, escape or refuse (400).")
]
BatchAtATimeOption = Annotated[
    bool,
    typer.Option(
        "--batch-at-a-time",
        help="No continuous batching: requests wait for the running batch to end instead of joining it.",
        rich_help_panel=LIMITS_PANEL,
    ),
]
LoraOption = Annotated[
    Optional[list[str]],
    typer.Option(
        metavar="NAME=PATH",
        help="Serve a LoRA adapter written by diffutron train as the model NAME (repeatable); it must fit --model.",
        rich_help_panel=SERVER_PANEL,
    ),
]
CompileOption = Annotated[
    bool,
    _server("torch.compile the encoder before serving (about a minute on a CPU; faster batches after).", "--compile"),
]


def serve(
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    speed: SpeedOption = "exact",
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    served_model_name: ServedModelNameOption = None,
    api_key: ApiKeyOption = None,
    max_batch_size: MaxBatchSizeOption = 16,
    batch_wait_ms: BatchWaitOption = 10.0,
    max_queue: MaxQueueOption = 64,
    request_timeout: RequestTimeoutOption = 120.0,
    max_request_tokens: MaxRequestTokensOption = DEFAULT_MAX_REQUEST_TOKENS,
    max_connections: MaxConnectionsOption = DEFAULT_MAX_CONNECTIONS,
    read_timeout: ReadTimeoutOption = DEFAULT_READ_TIMEOUT_S,
    allowed_host: AllowedHostOption = None,
    openapi: OpenapiOption = False,
    user_tags: UserTagsOption = "keep",
    batch_at_a_time: BatchAtATimeOption = False,
    compile: CompileOption = False,
    lora: LoraOption = None,
) -> None:
    """Serve a model over the OpenAI API (chat, completions, embeddings), plus /v1/infill, /tokenize,
    /detokenize, /health, /metrics and a chat page."""
    from transformers.utils import logging as transformers_logging

    from diffutron.serve.app import ServeOptions
    from diffutron.serve.server import adapter_paths, run_server, served_model_id

    transformers_logging.disable_progress_bar()
    options = ServeOptions(
        model_id=served_model_name or served_model_id(model),
        speed=speed,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        max_queue=max_queue,
        request_timeout=request_timeout,
        api_key=api_key,
        continuous_batching=not batch_at_a_time,
        compile=compile,
        max_request_tokens=max_request_tokens,
        max_connections=max_connections,
        read_timeout=read_timeout,
        allowed_hosts=tuple(allowed_host or ()),
        openapi=openapi,
        user_tags=user_tags,
    )
    adapters = adapter_paths(lora or [], options.model_id)
    compiling = " and compiling its encoder (about a minute on a CPU)" if compile else ""
    errors.print(f"Loading {model or 'the embedded model'}{compiling} ...", markup=False, highlight=False)
    run_server(
        options,
        model=model,
        host=host,
        port=port,
        device=device,
        dtype=dtype,
        adapters=adapters,
        on_ready=lambda url: say(f"Serving {options.model_id} at {url}/v1 (Ctrl+C to stop)"),
    )
