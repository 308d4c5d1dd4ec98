"""Image files in and out as uint8 H x W x 3 arrays (no torch here: the core and CLI use it too)."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from semnet.errors import SemnetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def load_image(path: str | Path) -> np.ndarray:
    """Any Pillow-readable image as RGB uint8; a missing or unreadable file is a SemnetError."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise SemnetError(f"{path}: cannot read image ({exc})") from None


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
