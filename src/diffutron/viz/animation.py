"""Animations of an answer being denoised: one frame per model call, as a GIF or an SVG.

The frames are laid out once (`viz.layout`) as shapes (`viz.shapes`), then drawn by the GIF
(`viz.gif`) or SVG (`viz.svg`) writer; text is set in DejaVu Sans (`viz.fonts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file
from diffutron.model.chat import render_chat
from diffutron.sampling.frames import DenoisingFrame, FrameRecorder, frame_text, visible_positions
from diffutron.viz.gif import render_gif
from diffutron.viz.layout import (
    LEGEND_SIZE,
    LINE_HEIGHT,
    MARGIN,
    MASK_GAP,
    MASK_WIDTH,
    META_SIZE,
    PROMPT_SIZE,
    TITLE_SIZE,
    TOKEN_SIZE,
    Layout,
)
from diffutron.viz.shapes import (
    ACCENT,
    BACKGROUND,
    EMPTY_EDGE,
    INK,
    MASK_EDGE,
    MASK_FILL,
    MUTED,
    PANEL,
    TRACK,
    WIDTH,
    Box,
    Label,
    Shape,
    confidence_colour,
)
from diffutron.viz.svg import render_svg

if TYPE_CHECKING:
    from diffutron.lm import Diffutron
    from diffutron.model.chat import Message
    from diffutron.sampling.config import GenerationConfig

__all__ = [  # the names this module has always offered, wherever they are defined now
    "ACCENT",
    "BACKGROUND",
    "EMPTY_EDGE",
    "FORMATS",
    "FRAME_MS",
    "INK",
    "LAST_FRAME_MS",
    "LEGEND_SIZE",
    "LINE_HEIGHT",
    "MARGIN",
    "MASK_EDGE",
    "MASK_FILL",
    "MASK_GAP",
    "MASK_WIDTH",
    "META_SIZE",
    "MUTED",
    "PANEL",
    "PROMPT_SIZE",
    "TITLE_SIZE",
    "TOKEN_SIZE",
    "TRACK",
    "WIDTH",
    "Box",
    "Label",
    "Shape",
    "animate_answer",
    "confidence_colour",
    "write_animation",
]

FORMATS = (".gif", ".svg")
FRAME_MS = 110
LAST_FRAME_MS = 2600


def write_animation(
    frames: Sequence[DenoisingFrame],
    path: str | Path,
    *,
    prompt: str | None = None,
    title: str = "Diffutron",
    overwrite: bool = False,
    frame_ms: int = FRAME_MS,
    last_frame_ms: int = LAST_FRAME_MS,
) -> Path:
    """Write the denoising of one answer to `path` (.gif or .svg), one frame per model call.

    `prompt`, if given, is shown above the answer. The last frame is held for `last_frame_ms`.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise DiffutronError(f"cannot write an animation to {path}: name the file .gif or .svg")
    if not frames:
        raise DiffutronError("no frames to animate: the answer took no model call")
    if path.exists() and not overwrite:
        raise DiffutronError(f"{path} already exists: choose another name or allow overwriting it")
    if frame_ms < 1 or last_frame_ms < 1:
        raise DiffutronError("frame durations must be at least 1 ms")
    scenes, height = Layout(prompt).scenes(frames, title)
    durations = [frame_ms] * (len(scenes) - 1) + [last_frame_ms]
    if path.suffix.lower() == ".gif":
        data = render_gif(scenes, height, durations)
    else:
        data = render_svg(scenes, height, durations, f"{title}: {frame_text(visible_positions(frames[-1]))}").encode()
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return path


def animate_answer(
    lm: Diffutron,
    prompt: str | Sequence[Message],
    path: str | Path,
    config: GenerationConfig | None = None,
    *,
    chat: bool = True,
    overwrite: bool = False,
) -> str:
    """Answer `prompt` (a question, a conversation, or with chat=False raw text to continue),
    write the animation of its denoising to `path`, and return the answer."""
    recorder = FrameRecorder(lm.tokenizer)
    if chat:
        answer = lm.chat(prompt, config, callback=recorder)
    else:
        if not isinstance(prompt, str):
            raise DiffutronError("raw continuation takes a text, not a conversation")
        answer = lm.generate([prompt], config, chat=False, callback=recorder)[0]
    write_animation(recorder.frames, path, prompt=_shown_prompt(prompt), overwrite=overwrite)
    return answer


def _shown_prompt(prompt: str | Sequence[Message]) -> str:
    """The text shown above the answer: the question (or raw text) itself, not the chat tags."""
    if isinstance(prompt, str):
        return prompt
    render_chat(prompt)  # the same checks as the model will make, before anything is drawn
    return str(prompt[-1]["content"])
