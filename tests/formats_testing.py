"""Drawing small datasets for the label-format tests (tests/test_formats_*.py)."""

import functools
import os

from PIL import Image


def draw_image(path, size=(20, 16), orientation=None):
    """A flat RGB image of ``size`` (width, height) at ``path`` (folders made), with an EXIF
    orientation tag when given (5-8 show it transposed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    picture = Image.new("RGB", size, (90, 120, 150))
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        picture.save(path, exif=exif)
    else:
        picture.save(path)


def write_text(path, text):
    """``text`` to ``path`` exactly as given (no newline translation; folders made)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


draw_wide_image = functools.partial(draw_image, size=(40, 20))
