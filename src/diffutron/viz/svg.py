"""Frames as an SVG: one group per frame shown in turn by SMIL, text drawn as glyph outlines.

The glyphs are paths, so the animation looks the same wherever it is opened.
"""

from __future__ import annotations

import html
from typing import Any

from diffutron.viz.fonts import Fonts
from diffutron.viz.shapes import WIDTH, Box, Label, Shape


def render_svg(scenes: list[list[Shape]], height: int, durations: list[int], description: str) -> str:
    """One group per frame, shown in turn by SMIL; text as glyph paths defined once and reused.

    The shapes every frame shares (background, title, legend) are drawn once beneath the frames.
    Viewers without SMIL show the last frame.
    """
    glyphs = _SvgDefinitions(Fonts())
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

    def __init__(self, fonts: Fonts) -> None:
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
