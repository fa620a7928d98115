"""Parse infill placeholders: `[MASK]` is one token to fill, `[MASK:5]` five."""

from __future__ import annotations

import re

from diffutron.errors import DiffutronError

PLACEHOLDER = re.compile(r"\[MASK(?::(\d+))?\]")
# Where a placeholder starts: "[MASK" not continuing a word (so "[MASKED]" stays text).
PLACEHOLDER_START = re.compile(r"\[MASK(?![^\W\d_])")
# More digits than any context holds: refused before converting them (or allocating anything).
MAX_WIDTH_DIGITS = 9


def parse_placeholders(text: str) -> list[str | int]:
    """Split text into literal pieces (str) and placeholder widths (int), in order.

    Every "[MASK" starts a placeholder that must read `[MASK]` or `[MASK:n]` with n >= 1;
    anything else there (`[MASK:-1]`, `[MASK:]`, `[MASK 3]`) is an error, not literal text.
    """
    parts: list[str | int] = []
    position = 0
    for start in PLACEHOLDER_START.finditer(text):
        match = PLACEHOLDER.match(text, start.start())
        if match is None:
            raise DiffutronError(
                f"malformed placeholder {_excerpt(text, start.start())!r}: write [MASK] for one token "
                "or [MASK:n] for n tokens (n >= 1)"
            )
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(_width(match))
        position = match.end()
    if position < len(text):
        parts.append(text[position:])
    if not any(isinstance(part, int) for part in parts):
        raise DiffutronError("no placeholder to fill: mark the gaps with [MASK] (one token) or [MASK:5] (five tokens)")
    return parts


def _width(match: re.Match[str]) -> int:
    digits = match.group(1)
    if digits is None:
        return 1
    if len(digits.lstrip("0")) > MAX_WIDTH_DIGITS:
        shown = digits if len(digits) <= 12 else digits[:12] + "..."
        raise DiffutronError(f"placeholder [MASK:{shown}] asks for more tokens than any model's context")
    width = int(digits)
    if width < 1:
        raise DiffutronError(f"placeholder {match.group(0)} asks for {width} tokens; use 1 or more")
    return width


def _excerpt(text: str, start: int) -> str:
    """The malformed placeholder as written: up to its closing bracket, at most 20 characters."""
    end = text.find("]", start)
    end = len(text) if end == -1 else end + 1
    return text[start : min(end, start + 20)]
