"""Turkish-aware text helpers: Python's `str.upper` maps "i" to "I", Turkish wants "İ" (and "ı" to "I")."""

from __future__ import annotations

_UPPER = {"i": "İ", "ı": "I"}
SENTENCE_ENDS = (".", "!", "?", "…")


def capitalize_first(text: str) -> str:
    """The first letter upper-cased the Turkish way, the rest untouched: «ilk» -> «İlk», «ıslak» -> «Islak»."""
    if not text:
        return text
    return _UPPER.get(text[0], text[0].upper()) + text[1:]


def as_sentence(text: str) -> str:
    """Capitalised and ending with a full stop unless it already ends a sentence."""
    text = capitalize_first(text)
    return text if text.endswith(SENTENCE_ENDS) else text + "."
