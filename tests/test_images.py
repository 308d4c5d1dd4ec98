"""Images are read as a viewer shows them: upright by EXIF orientation, transparency on white."""

import io

import numpy as np
from PIL import Image

from semnet.images import load_image, to_rgb


def test_exif_orientation_turns_the_image_upright(tmp_path):
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view", as a phone stores a portrait photo
    path = tmp_path / "portrait.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    upright = load_image(path)
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 200 and upright[-10:].mean() < 50  # the band is now on top


def test_transparency_is_composited_on_white_not_dropped():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red everywhere, hidden where alpha is 0
    rgba[:4, :, 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    with Image.open(buffer) as im:
        rgb = to_rgb(im)
    assert (rgb[:4] == (255, 0, 0)).all()  # opaque: as it was
    assert (rgb[4:] == 255).all()  # transparent: white, not the red under it


def test_an_opaque_rgb_image_is_unchanged():
    array = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert (to_rgb(Image.fromarray(array)) == array).all()
