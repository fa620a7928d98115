"""`diffutron serve`: an OpenAI-compatible HTTP server for a model (docs/serving.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def serve(
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Local checkpoint directory or hub id (default: the embedded model).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 opens the server to the network.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = 8000,
    speed: Annotated[str, typer.Option(help="exact (model card output), fast or fastest: the default settings.")]
    = "exact",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    dtype: Annotated[str, typer.Option(
        help="auto (on a CPU: what --speed picks), float32, bfloat16, float16 or int8 (CPU).")] = "auto",
    served_model_name: Annotated[Optional[str], typer.Option(
        help="The model id clients send (default: derived from --model).")] = None,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Most answers decoded together in one batch.")] = 16,
    batch_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for more requests to fill a batch.")]
    = 10.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests allowed to wait; more get a 429.")] = 64,
    request_timeout: Annotated[float, typer.Option(help="Seconds before an unanswered request gets a 504.")]
    = 120.0,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="DIFFUTRON_API_KEY", show_envvar=True, help="Require 'Authorization: Bearer KEY' on /v1.")] = None,
) -> None:
    """Serve a model over the OpenAI chat-completions API (plus /v1/infill, /health, /metrics)."""
    from transformers.utils import logging as transformers_logging

    from diffutron.serve.app import ServeOptions
    from diffutron.serve.server import run_server, served_model_id

    transformers_logging.disable_progress_bar()

    options = ServeOptions(
        model_id=served_model_name or served_model_id(model), speed=speed, max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms, max_queue=max_queue, request_timeout=request_timeout, api_key=api_key,
    )
    typer.echo(f"Loading {model or 'the embedded model'} ...", err=True)
    run_server(options, model=model, host=host, port=port, device=device, dtype=dtype,
               on_ready=lambda url: typer.echo(f"Serving {options.model_id} at {url}/v1 (Ctrl+C to stop)"))
