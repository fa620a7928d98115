"""DejaVu Sans, the font matplotlib ships (it covers Turkish), for measuring and drawing text."""

from __future__ import annotations

from typing import Any

from diffutron.errors import DiffutronError


class Fonts:
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
