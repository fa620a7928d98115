"""Animations of an answer being denoised: one frame per model call, as a GIF or an SVG.

Masks are drawn as boxes, the tokens committed at a call on a background coloured by their
confidence (red for unsure, green for sure), earlier tokens plain. Text is set in DejaVu Sans,
the font matplotlib ships, which covers Turkish; the SVG draws its glyphs as paths, so it
looks the same wherever it is opened.
"""

from __future__ import annotations

import colorsys
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffutron.errors import DiffutronError
from diffutron.files import atomic_file
from diffutron.model.chat import render_chat
from diffutron.sampling.frames import DenoisingFrame, FrameRecorder, frame_text, visible_positions

if TYPE_CHECKING:
    from diffutron.lm import Diffutron
    from diffutron.model.chat import Message
    from diffutron.sampling.config import GenerationConfig

FORMATS = (".gif", ".svg")
WIDTH = 760
MARGIN = 28
TOKEN_SIZE, TITLE_SIZE, META_SIZE, PROMPT_SIZE, LEGEND_SIZE = 22, 20, 15, 17, 14
LINE_HEIGHT = 34
MASK_WIDTH = 20
MASK_GAP = 3
PARAGRAPH_GAP = 10
FRAME_MS = 110
LAST_FRAME_MS = 2600

BACKGROUND = "#ffffff"
INK = "#1f2430"
MUTED = "#6b7280"
PANEL = "#f3f4f6"
MASK_FILL = "#e6e9ef"
MASK_EDGE = "#c4cad4"
EMPTY_EDGE = "#dde1e7"  # a decided token with no text: the end of the text (EOS, padding)
TRACK = "#e5e7eb"
ACCENT = "#6d5bd0"


def confidence_colour(confidence: float, lightness: float = 0.80) -> str:
    """Red (0) through amber to green (1): the highlight of a newly committed token.

    The web page (serve/static/app.js) uses the same scale: hue 130 * confidence degrees.
    """
    confidence = 0.5 if math.isnan(confidence) else min(max(confidence, 0.0), 1.0)  # NaN: neutral
    red, green, blue = colorsys.hls_to_rgb(130 * confidence / 360, lightness, 0.85)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    fill: str
    outline: str | None = None
    radius: float = 4


@dataclass(frozen=True)
class Label:
    x: float  # left end of the baseline
    y: float
    text: str
    size: int
    fill: str = INK
    bold: bool = False


Shape = Box | Label


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
    scenes, height = _Layout(prompt).scenes(frames, title)
    durations = [frame_ms] * (len(scenes) - 1) + [last_frame_ms]
    if path.suffix.lower() == ".gif":
        data = _gif(scenes, height, durations)
    else:
        data = _svg(scenes, height, durations, f"{title}: {frame_text(visible_positions(frames[-1]))}").encode()
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


class _Fonts:
    """DejaVu Sans from matplotlib, at the sizes the layout uses; measures text for both formats."""

    def __init__(self) -> None:
        try:
            from matplotlib import font_manager
            from PIL import ImageFont
        except ImportError as error:
            raise DiffutronError(
                f"animations need matplotlib and Pillow ({error.name} is missing): pip install 'diffutron[viz]'"
            ) from None
        self.paths = {
            bold: font_manager.findfont(
                font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal"),
                fallback_to_default=False,
            )
            for bold in (False, True)
        }
        self._image_font = ImageFont
        self._cache: dict[tuple[int, bool], Any] = {}

    def pil(self, size: int, bold: bool = False) -> Any:
        key = (size, bold)
        if key not in self._cache:
            self._cache[key] = self._image_font.truetype(
                self.paths[bold], size, layout_engine=self._image_font.Layout.BASIC
            )
        return self._cache[key]

    def width(self, text: str, size: int, bold: bool = False) -> float:
        return float(self.pil(size, bold).getlength(text))


class _Layout:
    """Places the header, the prompt, the answer's tokens and the legend; the same for every frame."""

    def __init__(self, prompt: str | None) -> None:
        self.fonts = _Fonts()
        self.prompt = prompt.strip() if prompt else None
        self.text_width = WIDTH - 2 * MARGIN

    @cached_property
    def answer_top(self) -> float:
        top = MARGIN + 48
        if self.prompt:
            top += len(self._prompt_lines) * 24 + 28
        return top

    @cached_property
    def _prompt_lines(self) -> list[str]:
        assert self.prompt is not None
        return _wrap_words(self.prompt, lambda text: self.fonts.width(text, PROMPT_SIZE), self.text_width - 24)

    def scenes(self, frames: Sequence[DenoisingFrame], title: str) -> tuple[list[list[Shape]], int]:
        flows = [self._flow(frame) for frame in frames]
        answer_height = max(height for _, height in flows)
        legend_top = self.answer_top + answer_height + 18
        height = int(legend_top + 26 + MARGIN)
        total = frames[-1]["call"]
        scenes = []
        for frame, (shapes, _) in zip(frames, flows):
            scene = [Box(0, 0, WIDTH, height, BACKGROUND, radius=0)]
            scene += self._header(title, frame, total)
            scene += self._prompt_panel()
            scene += shapes
            scene += self._legend(legend_top)
            scenes.append(scene)
        return scenes, height

    def _header(self, title: str, frame: DenoisingFrame, total: int) -> list[Shape]:
        meta = f"model call {frame['call']} / {total}  ·  block {frame['block'] + 1}"
        meta_x = WIDTH - MARGIN - self.fonts.width(meta, META_SIZE)
        progress = self.text_width * frame["call"] / max(total, 1)
        return [
            Label(MARGIN, MARGIN + 18, title, TITLE_SIZE, bold=True),
            Label(meta_x, MARGIN + 18, meta, META_SIZE, MUTED),
            Box(MARGIN, MARGIN + 30, self.text_width, 4, TRACK, radius=2),
            Box(MARGIN, MARGIN + 30, progress, 4, ACCENT, radius=2),
        ]

    def _prompt_panel(self) -> list[Shape]:
        if not self.prompt:
            return []
        top = MARGIN + 48
        shapes: list[Shape] = [Box(MARGIN, top, self.text_width, len(self._prompt_lines) * 24 + 14, PANEL, radius=8)]
        for index, line in enumerate(self._prompt_lines):
            shapes.append(Label(MARGIN + 12, top + 25 + index * 24, line, PROMPT_SIZE, "#374151"))
        return shapes

    def _legend(self, top: float) -> list[Shape]:
        x = MARGIN
        baseline = top + 17
        shapes: list[Shape] = [Box(x, top + 3, 16, 18, MASK_FILL, MASK_EDGE)]
        shapes.append(Label(x + 22, baseline, "masked", LEGEND_SIZE, MUTED))
        x += 22 + self.fonts.width("masked", LEGEND_SIZE) + 18
        shapes.append(Box(x, top + 3, 16, 18, BACKGROUND, EMPTY_EDGE))
        shapes.append(Label(x + 22, baseline, "end", LEGEND_SIZE, MUTED))
        x += 22 + self.fonts.width("end", LEGEND_SIZE) + 18
        caption = "new at this call, by confidence:"
        shapes.append(Label(x, baseline, caption, LEGEND_SIZE, MUTED))
        x += self.fonts.width(caption, LEGEND_SIZE) + 10
        shapes.append(Label(x, baseline, "low", LEGEND_SIZE, MUTED))
        x += self.fonts.width("low", LEGEND_SIZE) + 6
        for step in range(12):
            shapes.append(Box(x + step * 9, top + 4, 9, 16, confidence_colour(step / 11), radius=0))
        x += 12 * 9 + 6
        shapes.append(Label(x, baseline, "high", LEGEND_SIZE, MUTED))
        return shapes

    def _flow(self, frame: DenoisingFrame) -> tuple[list[Shape], float]:
        """The answer's tokens, wrapped at word boundaries; returns the shapes and their height."""
        fresh = dict(zip(frame["committed"], frame["confidence"]))
        shapes: list[Shape] = []
        x, line = 0.0, 0
        for unit in _units(visible_positions(frame)):
            if unit.newline:
                x, line = 0.0, line + 1
                continue
            lead = self.fonts.width(unit.lead, TOKEN_SIZE) if x > 0 else 0.0
            width = lead + sum(self._part_width(part) for part in unit.parts)
            if x > 0 and x + width > self.text_width:
                x, line, lead = 0.0, line + 1, 0.0
            x += lead
            top = self.answer_top + line * LINE_HEIGHT
            for position, text in unit.parts:
                if not text:
                    fill, edge = (MASK_FILL, MASK_EDGE) if text is None else (BACKGROUND, EMPTY_EDGE)
                    shapes.append(Box(MARGIN + x + MASK_GAP, top + 6, MASK_WIDTH, LINE_HEIGHT - 12, fill, edge))
                else:
                    text_width = self.fonts.width(text, TOKEN_SIZE)
                    if position in fresh and text.strip():
                        shapes.append(
                            Box(
                                MARGIN + x - 1,
                                top + 3,
                                text_width + 2,
                                LINE_HEIGHT - 6,
                                confidence_colour(fresh[position]),
                                radius=5,
                            )
                        )
                    shapes.append(Label(MARGIN + x, top + 24, text, TOKEN_SIZE))
                x += self._part_width((position, text))
        return shapes, (line + 1) * LINE_HEIGHT

    def _part_width(self, part: tuple[int, str | None]) -> float:
        return MASK_WIDTH + 2 * MASK_GAP if not part[1] else self.fonts.width(part[1], TOKEN_SIZE)


@dataclass
class _Unit:
    """What wraps as one piece: a word (one or more tokens), a mask, or a line break."""

    lead: str = ""  # whitespace before it, dropped at the start of a line
    parts: list[tuple[int, str | None]] | None = None
    newline: bool = False


def _units(tokens: Sequence[str | None]) -> list[_Unit]:
    units: list[_Unit] = []
    word: _Unit | None = None
    for position, token in enumerate(tokens):
        if not token:  # a mask, or a decided token with no text
            units.append(_Unit(parts=[(position, token)]))
            word = None
            continue
        for index, segment in enumerate(token.split("\n")):
            if index > 0:
                units.append(_Unit(newline=True))
                word = None
            body = segment.lstrip()
            if not body:
                continue
            if word is None or body != segment:
                word = _Unit(lead=segment[: len(segment) - len(body)], parts=[])
                units.append(word)
            assert word.parts is not None
            word.parts.append((position, body))
    return _collapse_breaks(units)


def _collapse_breaks(units: list[_Unit]) -> list[_Unit]:
    """No break at the start, at most two in a row (one empty line)."""
    kept: list[_Unit] = []
    for unit in units:
        if unit.newline and (not kept or (len(kept) >= 2 and kept[-1].newline and kept[-2].newline)):
            continue
        kept.append(unit)
    return kept


def _wrap_words(text: str, measure: Any, width: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if line and measure(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _gif(scenes: list[list[Shape]], height: int, durations: list[int]) -> bytes:
    """Frames drawn with Pillow on one shared palette, so that unchanged pixels stay equal between frames
    (Pillow then stores only the changed rectangle of each frame)."""
    from PIL import Image, ImageDraw

    fonts = _Fonts()
    images = []
    for scene in scenes:
        image = Image.new("RGB", (WIDTH, height), BACKGROUND)
        draw = ImageDraw.Draw(image)
        for shape in scene:
            if isinstance(shape, Box):
                if shape.width <= 0:
                    continue
                box = (shape.x, shape.y, shape.x + shape.width, shape.y + shape.height)
                draw.rounded_rectangle(box, radius=shape.radius, fill=shape.fill, outline=shape.outline)
            else:
                draw.text(
                    (shape.x, shape.y), shape.text, font=fonts.pil(shape.size, shape.bold), fill=shape.fill, anchor="ls"
                )
        images.append(image)
    sample = [images[index] for index in sorted({*range(0, len(images), max(1, len(images) // 8)), len(images) - 1})]
    montage = Image.new("RGB", (WIDTH, height * len(sample)))
    for index, image in enumerate(sample):
        montage.paste(image, (0, index * height))
    # the 256 most frequent colours, exact: flat fills keep their colour, rare edge shades map to the nearest
    counted = sorted(montage.getcolors(montage.width * montage.height), reverse=True)[:256]
    palette = np.array([colour for _, colour in counted], dtype=np.int64)
    frames = []
    for image in images:
        frame = Image.fromarray(_nearest(np.asarray(image), palette), mode="P")
        frame.putpalette(palette.astype(np.uint8).flatten().tolist())
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


def _nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Palette indices of an RGB image: exact where the colour is in the palette, else the nearest.

    (Pillow's own palette conversion looks colours up at reduced precision, which merges near-white
    shades with white.)"""
    codes = (pixels[..., 0].astype(np.int64) << 16) | (pixels[..., 1].astype(np.int64) << 8) | pixels[..., 2]
    unique, inverse = np.unique(codes.reshape(-1), return_inverse=True)
    colours = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    distances = ((colours[:, None, :] - palette[None, :, :]) ** 2).sum(axis=-1)
    return distances.argmin(axis=1).astype(np.uint8)[inverse].reshape(pixels.shape[:2])


def _svg(scenes: list[list[Shape]], height: int, durations: list[int], description: str) -> str:
    """One group per frame, shown in turn by SMIL; text as glyph paths defined once and reused.

    The shapes every frame shares (background, title, legend) are drawn once beneath the frames.
    Viewers without SMIL show the last frame.
    """
    glyphs = _SvgDefinitions(_Fonts())
    common = set(scenes[0]).intersection(*map(set, scenes[1:]))
    shared = [shape for shape in scenes[0] if shape in common]
    total = sum(durations)
    groups = ["".join(_svg_shape(shape, glyphs) for shape in shared)]
    start = 0
    for index, (scene, duration) in enumerate(zip(scenes, durations)):
        body = "".join(_svg_shape(shape, glyphs) for shape in scene if shape not in common)
        last = index == len(scenes) - 1
        groups.append(
            f'<g visibility="{"visible" if last else "hidden"}">'
            f"{_visibility(start / total, (start + duration) / total, total)}{body}</g>"
        )
        start += duration
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">'
        f"<title>{html.escape(description)}</title><defs>{glyphs.definitions()}</defs>{''.join(groups)}</svg>\n"
    )


def _visibility(begin: float, end: float, total_ms: int) -> str:
    """A SMIL animation that shows a frame from `begin` to `end` (fractions of the loop)."""
    if begin == 0 and end >= 1:
        return ""
    if begin == 0:
        values, times = ("visible", "hidden"), (0.0, end)
    elif end >= 1:
        values, times = ("hidden", "visible"), (0.0, begin)
    else:
        values, times = ("hidden", "visible", "hidden"), (0.0, begin, end)
    return (
        f'<animate attributeName="visibility" calcMode="discrete" values="{";".join(values)}" '
        f'keyTimes="{";".join(f"{time:.5f}" for time in times)}" dur="{total_ms / 1000:.3f}s" '
        'repeatCount="indefinite"/>'
    )


def _svg_shape(shape: Shape, glyphs: _SvgDefinitions) -> str:
    if isinstance(shape, Box) and shape.width <= 0 or isinstance(shape, Label) and not shape.text.strip():
        return ""
    fill = f' fill="{shape.fill}"' if isinstance(shape, Label) else ""
    return f'<use xlink:href="#{glyphs.use(shape)}" x="{shape.x:.1f}" y="{shape.y:.1f}"{fill}/>'


class _SvgDefinitions:
    """Each distinct box and text defined once, for <use> by every frame; a text is a row of glyph
    outlines, each glyph (at a size and weight) defined once too."""

    def __init__(self, fonts: _Fonts) -> None:
        from matplotlib.font_manager import FontProperties

        self.fonts = fonts
        self.properties = {bold: FontProperties(fname=path) for bold, path in fonts.paths.items()}
        self.ids: dict[tuple[object, ...], str] = {}
        self.elements: list[str] = []

    def use(self, shape: Shape) -> str:
        """The id of the definition that draws `shape` when placed at its position."""
        if isinstance(shape, Box):
            key: tuple[object, ...] = (shape.width, shape.height, shape.fill, shape.outline, shape.radius)
        else:
            key = (shape.text, shape.size, shape.bold)
        if key not in self.ids:
            self.ids[key] = identifier = f"d{len(self.ids)}"
            self.elements.append(self._element(shape, identifier))
        return self.ids[key]

    def _element(self, shape: Shape, identifier: str) -> str:
        if isinstance(shape, Box):
            stroke = f' stroke="{shape.outline}"' if shape.outline else ""
            return (
                f'<rect id="{identifier}" width="{shape.width:.1f}" height="{shape.height:.1f}" '
                f'rx="{shape.radius}" fill="{shape.fill}"{stroke}/>'
            )
        glyphs = "".join(
            f'<use xlink:href="#{self._glyph(character, shape.size, shape.bold)}" '
            f'x="{self.fonts.width(shape.text[:index], shape.size, shape.bold):.1f}"/>'
            for index, character in enumerate(shape.text)
            if not character.isspace()
        )
        return f'<g id="{identifier}">{glyphs}</g>'

    def _glyph(self, character: str, size: int, bold: bool) -> str:
        key = ("glyph", character, size, bold)
        if key not in self.ids:
            from matplotlib.textpath import TextPath

            outline = TextPath((0, 0), character, size=size, prop=self.properties[bold])
            self.ids[key] = identifier = f"d{len(self.ids)}"
            self.elements.append(f'<path id="{identifier}" d="{_path_data(outline)}"/>')
        return self.ids[key]

    def definitions(self) -> str:
        return "".join(self.elements)


def _path_data(outline: Any) -> str:
    """SVG path data of a matplotlib Path, y flipped (font units grow upwards, SVG's downwards)."""
    from matplotlib.path import Path as MplPath

    commands = {MplPath.MOVETO: "M", MplPath.LINETO: "L", MplPath.CURVE3: "Q", MplPath.CURVE4: "C"}
    data = []
    for vertices, code in outline.iter_segments(simplify=False):
        if code == MplPath.CLOSEPOLY:
            data.append("Z")
            continue
        points = " ".join(f"{x:.1f} {-y:.1f}" for x, y in vertices.reshape(-1, 2))
        data.append(f"{commands[code]}{points}")
    return "".join(data)
