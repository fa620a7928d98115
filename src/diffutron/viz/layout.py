"""Where each shape of a frame goes: the header, the prompt, the answer's tokens and the legend.

Masks are drawn as boxes, the tokens committed at a call on a background coloured by their
confidence (red for unsure, green for sure), earlier tokens plain; words wrap inside the margins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from diffutron.sampling.frames import DenoisingFrame, visible_positions
from diffutron.viz.fonts import Fonts
from diffutron.viz.shapes import (
    ACCENT,
    BACKGROUND,
    EMPTY_EDGE,
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

MARGIN = 28
TOKEN_SIZE, TITLE_SIZE, META_SIZE, PROMPT_SIZE, LEGEND_SIZE = 22, 20, 15, 17, 14
LINE_HEIGHT = 34
MASK_WIDTH = 20
MASK_GAP = 3


class Layout:
    """Places the header, the prompt, the answer's tokens and the legend; the same for every frame."""

    def __init__(self, prompt: str | None) -> None:
        self.fonts = Fonts()
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
