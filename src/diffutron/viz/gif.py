"""Frames as a GIF: drawn with Pillow on one shared palette of exact colours."""

from __future__ import annotations

import io

import numpy as np

from diffutron.viz.fonts import Fonts
from diffutron.viz.shapes import BACKGROUND, WIDTH, Box, Shape


def render_gif(scenes: list[list[Shape]], height: int, durations: list[int]) -> bytes:
    """Frames drawn with Pillow on one shared palette, so that unchanged pixels stay equal between frames
    (Pillow then stores only the changed rectangle of each frame)."""
    from PIL import Image, ImageDraw

    fonts = Fonts()
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
