"""The receiver's reconstructions on disk, kept within a byte budget: the newest are kept."""

import contextlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from semnet.images import save_png


class SavedImages:
    """Saves PNGs into ``folder`` and deletes the oldest this process saved once their total
    passes ``max_bytes`` (files already in the folder are never touched)."""

    def __init__(self, folder: str | Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.files: OrderedDict[Path, int] = OrderedDict()  # oldest first
        self.bytes = 0
        self.deleted = 0

    def save(self, image: np.ndarray, name: str) -> Path:
        path = save_png(image, self.folder / name).resolve()
        size = path.stat().st_size
        self.bytes += size - self.files.pop(path, 0)  # a name saved again replaces its file
        self.files[path] = size
        while self.bytes > self.max_bytes and len(self.files) > 1:
            old, old_size = self.files.popitem(last=False)
            with contextlib.suppress(FileNotFoundError):  # removed by someone else meanwhile
                old.unlink()
            self.bytes -= old_size
            self.deleted += 1
        return path
