"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (``make fashion-mnist``):
the four gzipped idx files read with numpy, nothing downloaded.

60 000 training and 10 000 test images, 28 x 28 grey, 10 classes. The multi-task codec
(``semnet.models.mijscc``) sees them as RGB batches in [0, 1] (grey replicated to 3 channels),
the one image layout every semnet codec and the packet path take.
"""

import gzip
from pathlib import Path

import numpy as np

from semnet.errors import SemnetError

ROOT = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
HINT = "`make fashion-mnist` installs it (apt-get install dataset-fashion-mnist)"


def available(root: Path = ROOT) -> bool:
    return all((root / f).is_file() for pair in FILES.values() for f in pair)


def _idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An idx file (big-endian header: magic, then ``dims`` sizes) as a uint8 array."""
    try:
        data = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise SemnetError(f"Fashion-MNIST: {path} missing: {HINT}") from None
    except (OSError, EOFError) as exc:
        raise SemnetError(f"Fashion-MNIST: {path}: not a gzip file ({exc})") from None
    header = 4 * (1 + dims)
    if len(data) < header:
        raise SemnetError(f"Fashion-MNIST: {path}: truncated header")
    fields = np.frombuffer(data, dtype=">u4", count=1 + dims)
    if int(fields[0]) != magic:
        raise SemnetError(f"Fashion-MNIST: {path}: magic {int(fields[0]):#x}, not {magic:#x}")
    shape = tuple(int(n) for n in fields[1:])
    if len(data) - header != int(np.prod(shape)):
        raise SemnetError(f"Fashion-MNIST: {path}: {len(data) - header} bytes for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load(split: str, root: Path = ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of ``split`` ("train" or "test")."""
    if split not in FILES:
        raise ValueError(f"split {split!r} is not train or test")
    images_file, labels_file = FILES[split]
    images = _idx(root / images_file, 0x803, 3)
    labels = _idx(root / labels_file, 0x801, 1).astype(np.int64)
    if len(images) != len(labels):
        raise SemnetError(f"Fashion-MNIST {split}: {len(images)} images, {len(labels)} labels")
    return images, labels


def as_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 3, 28, 28) float32 in [0, 1], the grey value in all three."""
    x = images.astype(np.float32)[:, None] / 255.0
    return np.repeat(x, 3, axis=1)
