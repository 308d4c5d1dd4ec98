"""Image files in and out as uint8 H x W x 3 arrays (no torch here: the core and CLI use it too)."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from semnet.errors import SemnetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
BACKGROUND = (255, 255, 255)  # what transparent pixels are shown on, as a browser would


def load_image(path: str | Path) -> np.ndarray:
    """Any Pillow-readable image as RGB uint8; a missing or unreadable file is a SemnetError."""
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise SemnetError(f"{path}: cannot read image ({exc})") from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """The image as it is seen: turned upright by its EXIF orientation (a phone's portrait
    photo is stored sideways), and transparency composited onto white rather than dropped
    (Pillow's plain RGB conversion shows whatever colour hides under alpha 0)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (*BACKGROUND, 255))
        im = Image.alpha_composite(background, im)
    return np.asarray(im.convert("RGB"))


def save_png(array: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def image_files(folder: str | Path) -> list[Path]:
    """The images directly inside ``folder``, sorted by name so runs are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SemnetError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SemnetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files
