"""`diffutron serve`: an OpenAI-compatible HTTP server for a model (docs/serving.md)."""

from typing import Annotated, Literal, Optional

import typer

from diffutron.cli.console import errors, say
from diffutron.cli.options import DeviceOption, DtypeOption, ModelOption
from diffutron.sampling.presets import SPEEDS

SERVER_PANEL = "Server"
LIMITS_PANEL = "Batching and limits"


def serve(
    model: ModelOption = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    speed: Annotated[
        Literal[SPEEDS], typer.Option(help="Default settings: exact is the model card's output.")
    ] = "exact",
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 0.0.0.0 opens the server to the network.", rich_help_panel=SERVER_PANEL
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.", rich_help_panel=SERVER_PANEL)
    ] = 8000,
    served_model_name: Annotated[
        Optional[str],
        typer.Option(help="The model id clients send (default: from --model).", rich_help_panel=SERVER_PANEL),
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="DIFFUTRON_API_KEY", help="Require 'Authorization: Bearer KEY' on /v1.", rich_help_panel=SERVER_PANEL
        ),
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option(min=1, help="Most answers decoded together in one batch.", rich_help_panel=LIMITS_PANEL)
    ] = 16,
    batch_wait_ms: Annotated[
        float, typer.Option(min=0, help="Longest wait for more requests to fill a batch.", rich_help_panel=LIMITS_PANEL)
    ] = 10.0,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests allowed to wait; more get a 429.", rich_help_panel=LIMITS_PANEL)
    ] = 64,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds before an unanswered request gets a 504.", rich_help_panel=LIMITS_PANEL)
    ] = 120.0,
    batch_at_a_time: Annotated[
        bool,
        typer.Option(
            "--batch-at-a-time",
            help="No continuous batching: requests wait for the running batch to end instead of joining it.",
            rich_help_panel=LIMITS_PANEL,
        ),
    ] = False,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="torch.compile the encoder before serving (about a minute on a CPU; faster batches after).",
            rich_help_panel=SERVER_PANEL,
        ),
    ] = False,
) -> None:
    """Serve a model over the OpenAI API (chat, completions), plus /v1/infill, /health, /metrics and a chat page."""
    from transformers.utils import logging as transformers_logging

    from diffutron.serve.app import ServeOptions
    from diffutron.serve.server import run_server, served_model_id

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
    )
    compiling = " and compiling its encoder (about a minute on a CPU)" if compile else ""
    errors.print(f"Loading {model or 'the embedded model'}{compiling} ...", markup=False, highlight=False)
    run_server(
        options,
        model=model,
        host=host,
        port=port,
        device=device,
        dtype=dtype,
        on_ready=lambda url: say(f"Serving {options.model_id} at {url}/v1 (Ctrl+C to stop)"),
    )
