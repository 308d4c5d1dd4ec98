"""uint8 H x W x 3 images <-> float (1, 3, H, W) tensors in [0, 1], and the compute device."""

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" is CUDA when present, else CPU; nothing needs a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants to own it
        array = array.copy()
    t = torch.from_numpy(array).permute(2, 0, 1)[None]
    return t.to(device=device, dtype=torch.float32).div_(255.0)


def to_image(x: torch.Tensor) -> np.ndarray:
    return x[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
