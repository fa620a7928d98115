"""The interactive `diffutron chat` loop, with a live view of the denoising canvas."""

from __future__ import annotations

import functools
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.text import Text

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.sampler import StepEvent

MASK_GLYPH = "░"


class CanvasView:
    """Renders the generated part of the canvas: masks as placeholders, new tokens highlighted."""

    def __init__(self, lm: Diffutron, live: Live, new_tokens: int) -> None:
        self.lm = lm
        self.live = live
        self.new_tokens = new_tokens
        self.piece = functools.lru_cache(maxsize=65536)(
            lambda token: lm.tokenizer.decode([token], skip_special_tokens=True)
        )

    def __call__(self, event: StepEvent) -> None:
        row = event.canvas[0].tolist()
        fresh = event.committed[0].tolist()
        text = Text()
        for position in range(len(row) - self.new_tokens, len(row)):
            token = row[position]
            if token == self.lm.special.mask:
                text.append(MASK_GLYPH, style="dim")
            else:
                text.append(self.piece(token), style="bold green" if fresh[position] else "")
        text.append(f"\n[step {event.calls}]", style="dim")
        self.live.update(text)


def run_chat(
    lm: Diffutron,
    config: GenerationConfig,
    *,
    system: str | None,
    viz: bool,
    console: Console,
    ask: Callable[[str], str] | None = None,
) -> None:
    """Read questions until /exit or end of input; each answer joins the conversation."""
    ask = ask or console.input
    opening = [{"role": "system", "content": system}] if system else []
    history = list(opening)
    console.print("[dim]Diffutron chat: /reset starts over, /exit quits.[/dim]")
    while True:
        try:
            text = ask("[bold cyan]you>[/bold cyan] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if not text:
            console.print("[dim]Please write a question (or /exit).[/dim]")
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(opening)
            console.print("[dim]Conversation cleared.[/dim]")
            continue
        turn = [*history, {"role": "user", "content": text}]
        try:
            answer = _answer(lm, turn, config, viz, console)
        except DiffutronError as error:
            console.print(f"[red]error:[/red] {error}", highlight=False)
            continue
        history = [*turn, {"role": "assistant", "content": answer}]
        console.print(Text("diffutron> ", style="bold magenta") + Text(answer))


def _answer(lm: Diffutron, turn: list[dict[str, str]], config: GenerationConfig, viz: bool,
            console: Console) -> str:
    if not viz or not console.is_terminal:
        return lm.chat(turn, config)
    with Live(console=console, transient=True, refresh_per_second=20) as live:
        return lm.chat(turn, config, callback=CanvasView(lm, live, config.max_new_tokens))
