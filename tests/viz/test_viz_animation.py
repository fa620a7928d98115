"""Animations of the denoising: one frame per model call, GIF and SVG, Turkish text, safe writes."""

from __future__ import annotations

from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image

from diffutron import Diffutron, DiffutronError
from diffutron.sampling.frames import FrameRecorder
from diffutron.viz.animation import BACKGROUND, LAST_FRAME_MS, MARGIN, MASK_FILL, WIDTH, animate_answer, write_animation

QUESTION = "«öğretmen» ne anlama gelir?"
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}href"


@pytest.fixture(scope="module")
def lm():
    return Diffutron.from_pretrained(None)


@pytest.fixture(scope="module")
def recorded(lm):
    recorder = FrameRecorder(lm.tokenizer)
    answer = lm.chat(
        QUESTION, lm.config.replace(seed=0, max_new_tokens=32, steps=32, block_length=16), callback=recorder
    )
    return answer, recorder.frames


def _rgb(colour):
    return tuple(int(colour[index : index + 2], 16) for index in (1, 3, 5))


def _count(image, colour):
    return int((np.asarray(image.convert("RGB")) == _rgb(colour)).all(axis=-1).sum())


def test_gif_has_one_frame_per_model_call(recorded, tmp_path):
    answer, frames = recorded
    path = write_animation(frames, tmp_path / "answer.gif", prompt=QUESTION)
    with Image.open(path) as image:
        assert image.format == "GIF"
        assert image.n_frames == len(frames) == frames[-1]["call"] > 1
        assert image.size[0] == WIDTH
        masks, durations = [], []
        for index in range(image.n_frames):
            image.seek(index)
            masks.append(_count(image, MASK_FILL))
            durations.append(image.info["duration"])
    assert masks[0] > masks[len(masks) // 2] > masks[-1]  # the masks give way to words
    assert durations[-1] == LAST_FRAME_MS and max(durations[:-1]) < LAST_FRAME_MS
    assert answer  # the embedded model answers something: the last frame shows it


def test_svg_has_one_shown_group_per_call_and_no_dangling_references(recorded, tmp_path):
    _, frames = recorded
    path = write_animation(frames, tmp_path / "answer.svg", prompt=QUESTION)
    root = ElementTree.parse(path).getroot()
    groups = [group for group in root.findall(f"{SVG}g") if group.get("visibility")]
    assert len(groups) == len(frames)
    assert [group.get("visibility") for group in groups].count("visible") == 1  # the last: shown without SMIL
    defined = {element.get("id") for element in root.iter() if element.get("id")}
    used = {element.get(XLINK)[1:] for element in root.iter(f"{SVG}use")}
    assert used and used <= defined


def test_turkish_letters_have_glyphs_in_the_font():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"), fallback_to_default=False)
    font = FT2Font(path)
    assert "DejaVuSans" in path
    assert all(font.get_char_index(ord(letter)) != 0 for letter in "çğıöşüÇĞİÖŞÜâîû«»")


def test_long_answers_wrap_inside_the_margins(tmp_path):
    words = ["Çekoslovakyalılaştıramadıklarımızdan", *["kelime"] * 60]
    tokens = [f" {word}" for word in words] + [None] * 20
    frames = [
        {"index": 0, "call": call, "block": 0, "tokens": tokens, "committed": [call], "confidence": [0.5]}
        for call in (1, 2)
    ]
    path = write_animation(frames, tmp_path / "long.gif")
    with Image.open(path) as image:
        for index in range(image.n_frames):
            image.seek(index)
            frame = image.convert("RGB")
            right_margin = frame.crop((WIDTH - MARGIN + 3, 0, WIDTH, frame.height))
            assert (np.asarray(right_margin) == _rgb(BACKGROUND)).all()
            assert frame.height > 300  # the text took several lines


def test_bad_requests_are_refused_and_files_kept(recorded, tmp_path):
    _, frames = recorded
    with pytest.raises(DiffutronError, match=r"\.gif or \.svg"):
        write_animation(frames, tmp_path / "answer.mp4")
    with pytest.raises(DiffutronError, match="no frames"):
        write_animation([], tmp_path / "answer.gif")
    existing = tmp_path / "mine.gif"
    existing.write_bytes(b"keep me")
    with pytest.raises(DiffutronError, match="already exists"):
        write_animation(frames, existing)
    assert existing.read_bytes() == b"keep me"
    write_animation(frames, existing, overwrite=True)
    assert existing.read_bytes().startswith(b"GIF8")


def test_animate_answer_returns_the_answer_it_draws(lm, tmp_path):
    config = lm.config.replace(seed=0, max_new_tokens=16, steps=8, block_length=16)
    answer = animate_answer(lm, QUESTION, tmp_path / "a.svg", config)
    assert answer == lm.chat(QUESTION, config)
    root = ElementTree.parse(tmp_path / "a.svg").getroot()
    assert answer in root.find(f"{SVG}title").text


def _last_gif_frame(frames, path):
    write_animation(frames, path)
    with Image.open(path) as image:
        image.seek(image.n_frames - 1)
        return np.asarray(image.convert("RGB"))


def test_the_end_tag_and_what_follows_it_are_not_drawn(tmp_path):
    def frames(tokens, **extra):
        return [{"index": 0, "call": 1, "block": 0, "tokens": tokens, "committed": [0], "confidence": [0.5], **extra}]

    answer = [" Bir", " şey", "."]
    drawn = _last_gif_frame(frames(answer), tmp_path / "answer.gif")
    tagged = [*answer, "\n[/", "Answer", "]", " sonra", " daha", " çok", " kelime"]
    assert (_last_gif_frame(frames(tagged), tmp_path / "tagged.gif") == drawn).all()
    # a frame's own `visible` positions are what is drawn
    assert (_last_gif_frame(frames([*answer, "", " x"], visible=answer), tmp_path / "cut.gif") == drawn).all()
    assert not (_last_gif_frame(frames([*answer, " x"]), tmp_path / "more.gif") == drawn).all()
