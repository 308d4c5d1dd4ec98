"""The public evaluation photos: read offline from installed packages, never used for training.

scikit-image ships astronaut, chelsea, coffee, rocket and the Middlebury motorcycle (left view);
scikit-learn ships china and flower (both are the optional extra ``semnet[eval]``); matplotlib
ships grace_hopper, but matplotlib is not a dependency of semnet: without it that photo is
simply left out of :func:`eval_images` (and :func:`eval_image` says why).

Every image is returned as a fresh, C-contiguous uint8 H x W x 3 array. Licences, as the
packages state them: astronaut and rocket public domain, chelsea and coffee CC0, motorcycle from
the Middlebury 2014 stereo data set, china and flower CC BY 2.0 (Flickr: danielbuechele,
vultilion) — credit those two when publishing images of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from semnet.errors import SemnetError
from semnet.images import load_image, save_png


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def loader() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)

    return loader


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def loader() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return loader


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


# name -> (module that must be importable, pip name, how to install it, loader)
_EXTRA = "the optional extra: pip install 'semnet[eval]'"
_SOURCES: dict[str, tuple[str, str, str, Callable[[], np.ndarray]]] = {
    "astronaut": ("skimage", "scikit-image", _EXTRA, _skimage("astronaut")),
    "chelsea": ("skimage", "scikit-image", _EXTRA, _skimage("chelsea")),
    "coffee": ("skimage", "scikit-image", _EXTRA, _skimage("coffee")),
    "rocket": ("skimage", "scikit-image", _EXTRA, _skimage("rocket")),
    "motorcycle": ("skimage", "scikit-image", _EXTRA, _skimage("stereo_motorcycle")),
    "china": ("sklearn", "scikit-learn", _EXTRA, _sklearn(0)),
    "flower": ("sklearn", "scikit-learn", _EXTRA, _sklearn(1)),
    "grace_hopper": (
        "matplotlib",
        "matplotlib",
        "not a semnet dependency: pip install matplotlib to include this photo",
        _grace_hopper,
    ),
}

EVAL_NAMES: tuple[str, ...] = tuple(_SOURCES)


@functools.cache
def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def available_names() -> tuple[str, ...]:
    """The evaluation photos whose package is installed, in :data:`EVAL_NAMES` order."""
    return tuple(n for n in EVAL_NAMES if _importable(_SOURCES[n][0]))


@functools.lru_cache(maxsize=len(_SOURCES))
def _load(name: str) -> np.ndarray:
    module, package, how, loader = _SOURCES[name]
    if not _importable(module):
        raise SemnetError(f"evaluation image {name!r} needs {package} ({how})")
    image = np.asarray(loader())
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise SemnetError(f"evaluation image {name!r}: unexpected {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image[..., :3])
    image.flags.writeable = False
    return image


def eval_image(name: str) -> np.ndarray:
    """One evaluation photo as uint8 H x W x 3 (a copy the caller may modify)."""
    if name not in _SOURCES:
        raise SemnetError(f"unknown evaluation image {name!r} (known: {', '.join(EVAL_NAMES)})")
    return _load(name).copy()


def eval_images() -> dict[str, np.ndarray]:
    """Every evaluation photo whose package is installed, by name, in :data:`EVAL_NAMES` order."""
    return {name: eval_image(name) for name in available_names()}


def export_eval_images(folder: str | Path) -> list[Path]:
    """Write ``<name>.png`` for each available photo (for ``semnet demo --images DIR``, sweeps)."""
    folder = Path(folder)
    return [save_png(image, folder / f"{name}.png") for name, image in eval_images().items()]
