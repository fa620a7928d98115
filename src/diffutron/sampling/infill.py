"""Parse infill placeholders: `[MASK]` is one token to fill, `[MASK:5]` five."""

from __future__ import annotations

import re

from diffutron.errors import DiffutronError

PLACEHOLDER = re.compile(r"\[MASK(?::(\d+))?\]")


def parse_placeholders(text: str) -> list[str | int]:
    """Split text into literal pieces (str) and placeholder widths (int), in order."""
    parts: list[str | int] = []
    position = 0
    for match in PLACEHOLDER.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        width = int(match.group(1)) if match.group(1) is not None else 1
        if width < 1:
            raise DiffutronError(f"placeholder {match.group(0)} asks for {width} tokens; use 1 or more")
        parts.append(width)
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    if not any(isinstance(part, int) for part in parts):
        raise DiffutronError(
            "no placeholder to fill: mark the gaps with [MASK] (one token) or [MASK:5] (five tokens)"
        )
    return parts
