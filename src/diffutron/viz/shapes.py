"""What every frame is drawn from: boxes and labels on a canvas `WIDTH` wide, in one palette.

The layout places them; the GIF and SVG writers draw them, so both formats show the same picture.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

WIDTH = 760

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
