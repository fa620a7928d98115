"""The live canvas view of `diffutron chat`: masks drawn as placeholders until committed."""

from __future__ import annotations

from diffutron import Diffutron, GenerationConfig
from diffutron.cli.chat_session import MASK_GLYPH, CanvasView


class Frames:
    """Stands in for rich's Live: keeps every frame the view draws."""

    def __init__(self):
        self.texts = []

    def update(self, renderable):
        self.texts.append(renderable)


def test_canvas_view_shows_masks_then_tokens(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    config = GenerationConfig(max_new_tokens=6, steps=6, block_length=6, temperature=0.0, early_stop=False)
    frames = Frames()
    lm.chat("Kitap ne demek?", config, callback=CanvasView(lm, frames, config.max_new_tokens))
    plain = [text.plain for text in frames.texts]
    assert [frame.count(MASK_GLYPH) for frame in plain] == [5, 4, 3, 2, 1, 0]
    assert plain[-1].endswith("[step 6]")
    highlighted = [[span for span in text.spans if span.style == "bold green"] for text in frames.texts]
    assert all(len(spans) == 1 for spans in highlighted)  # one new token per step, highlighted
