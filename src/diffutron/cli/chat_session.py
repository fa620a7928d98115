"""The interactive `diffutron chat` loop, with a live view of the denoising canvas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.live import Live
from rich.text import Text

from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.model.chat import Message, render_chat
from diffutron.model.tokens import check_unicode
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.frames import FrameBuilder, FrameRecorder
from diffutron.sampling.sampler import StepEvent
from diffutron.sampling.structured import ResponseFormat

MASK_GLYPH = "░"
CONTINUATION = "\\"  # a line ending in a backslash continues on the next line
COMMANDS = {
    "/help": "show these commands",
    "/reset": "start the conversation over (the system message stays)",
    "/save-animation PATH": "draw the denoising of the last answer (.gif or .svg)",
    "/exit": "quit (also /quit or Ctrl-D)",
}


class CanvasView:
    """Renders a frame's `visible` positions of the answer: masks as placeholders, new tokens highlighted."""

    def __init__(self, lm: Diffutron, live: Live, new_tokens: int) -> None:
        self.live = live
        self.new_tokens = new_tokens
        self.frames = FrameBuilder(lm.tokenizer)

    def __call__(self, event: StepEvent) -> None:
        width = event.canvas.shape[1]
        frame = self.frames.frame(event, 0, region=range(width - self.new_tokens, width))
        fresh = set(frame["committed"])
        text = Text()
        for position, piece in enumerate(frame["visible"]):
            if piece is None:
                text.append(MASK_GLYPH, style="dim")
            else:
                text.append(piece, style="bold green" if position in fresh else "")
        text.append(f"\n[step {event.calls}]", style="dim")
        self.live.update(text)


def fit_history(
    lm: Diffutron, history: Sequence[Message], question: str, config: GenerationConfig
) -> tuple[list[Message], int]:
    """The conversation to send: the newest whole turns that fit the context with the answer's
    tokens, the system message kept; and how many old messages were left out.

    Raises if the question alone (with the system message) does not fit.
    """
    system = [message for message in history[:1] if message["role"] == "system"]
    turns = list(history[len(system) :])
    room = lm.context_length - config.max_new_tokens
    while True:
        conversation = [*system, *turns, {"role": "user", "content": question}]
        if len(lm.encode(render_chat(conversation))) <= room:
            return conversation, len(history) - len(system) - len(turns)
        if not turns:
            raise DiffutronError(
                f"this message does not fit the model's context of {lm.context_length} tokens with "
                f"max_new_tokens={config.max_new_tokens}: shorten it (or the system message), or lower --max-new-tokens"
            )
        turns = turns[2:]  # the oldest question and its answer


def run_chat(
    lm: Diffutron,
    config: GenerationConfig,
    *,
    system: str | None,
    viz: bool,
    console: Console,
    ask: Callable[[str], str] | None = None,
    response_format: ResponseFormat | None = None,
) -> None:
    """Read messages until /exit or end of input; each answer joins the conversation (JSON answers
    with a `response_format`)."""
    ask = ask or console.input
    opening = [{"role": "system", "content": system}] if system else []
    if system:
        fit_history(lm, opening, "?", config)  # an over-long system message fails here, not at each turn
    history: list[Message] = list(opening)
    warned = False
    last: tuple[list, str] | None = None  # the last answer's frames and question, for /save-animation
    console.print(
        Text(
            "Diffutron chat: /help lists the commands, /save-animation PATH draws the last answer, /exit quits.",
            style="dim",
        )
    )
    while True:
        text = _read_message(ask, console)
        if text is None:
            break
        if not text:
            console.print(Text("Please write a question (or /exit).", style="dim"))
            continue
        try:
            check_unicode(text, "your message")
        except DiffutronError as error:  # checked first: such text cannot even be printed back
            console.print(Text.assemble(("error: ", "red"), str(error)))
            continue
        command = text.lower()
        if command in ("/exit", "/quit"):
            break
        if command == "/help":
            for name, meaning in COMMANDS.items():
                console.print(Text(f"{name:<21} {meaning}", style="dim"))
            console.print(
                Text(f"End a line with {CONTINUATION} to continue the message on the next line.", style="dim")
            )
            continue
        if command == "/reset":
            history = list(opening)
            console.print(Text("Conversation cleared.", style="dim"))
            continue
        if command.split(maxsplit=1)[0] == "/save-animation":
            _save_animation(last, text.split(maxsplit=1)[1:], console)
            continue
        if command.startswith("/") and " " not in command:
            console.print(Text(f"unknown command {text}; /help lists the commands", style="yellow"))
            continue
        try:
            turn, dropped = fit_history(lm, history, text, config)
            if dropped and not warned:
                console.print(Text("Older turns no longer fit the model's context and are left out.", style="dim"))
                warned = True
            recorder = FrameRecorder(lm.tokenizer)
            answer = _answer(lm, turn, config, viz, console, recorder, response_format)
        except DiffutronError as error:
            console.print(Text.assemble(("error: ", "red"), str(error)))
            continue
        history = [*history, {"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        last = (recorder.frames, text)
        console.print(Text("diffutron> ", style="bold magenta") + Text(answer))


def _read_message(ask: Callable[[str], str], console: Console) -> str | None:
    """One message, over several lines where a line ends in a backslash; None at end of input."""
    lines = []
    prompt = Text("you> ", style="bold cyan")
    while True:
        try:
            line = ask(prompt)
        except (EOFError, KeyboardInterrupt):
            console.print()  # leave the terminal on a fresh line
            return None
        if line.endswith(CONTINUATION):
            lines.append(line[: -len(CONTINUATION)])
            prompt = Text("...> ", style="dim")
            continue
        lines.append(line)
        return "\n".join(lines).strip()


def _answer(
    lm: Diffutron,
    turn: list[Message],
    config: GenerationConfig,
    viz: bool,
    console: Console,
    recorder: FrameRecorder,
    response_format: ResponseFormat | None,
) -> str:
    if response_format is not None:  # the live view draws a free answer's canvas of max_new_tokens
        return lm.chat(turn, config, callback=recorder, response_format=response_format)
    if not viz or not console.is_terminal:
        return lm.chat(turn, config, callback=recorder)
    with Live(console=console, transient=True, refresh_per_second=20) as live:
        view = CanvasView(lm, live, config.max_new_tokens)
        return lm.chat(turn, config, callback=lambda event: (view(event), recorder(event)))


def _save_animation(last: tuple[list, str] | None, arguments: list[str], console: Console) -> None:
    """Draw the last answer; a file that cannot be written is an error line, and the chat goes on."""
    from diffutron.files import check_destination
    from diffutron.viz.animation import write_animation

    try:
        if not arguments:
            raise DiffutronError("give a file: /save-animation answer.gif (or .svg)")
        if last is None:
            raise DiffutronError("no answer to draw yet: ask something first")
        target = check_destination(arguments[0].strip(), kind="file", flag=None)
        path = write_animation(last[0], target, prompt=last[1])
    except DiffutronError as error:
        console.print(Text.assemble(("error: ", "red"), str(error)))
        return
    console.print(Text(f"wrote the animation to {path}", style="dim"))
