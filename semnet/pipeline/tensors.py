"""uint8 H x W x 3 images <-> float (1, 3, H, W) tensors in [0, 1], and the compute device."""

import numpy as np
import torch

from semnet.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """ "auto" is CUDA when present, else CPU; nothing needs a GPU. A device asked for by name
    must exist now: a daemon refuses to start rather than fail every frame later."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name[:40]!r} is not a torch device") from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ConfigError(f"device: {name} is not available here (torch sees no such GPU)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: mps is not available here")
    return device


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    array = np.ascontiguousarray(image)
    if not array.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants to own it
        array = array.copy()
    t = torch.from_numpy(array)
    if device.type == "cuda":  # page-locked, so the copy goes by DMA; uint8, a quarter the bytes
        t = t.pin_memory().to(device, non_blocking=True)
    return t.permute(2, 0, 1)[None].to(device=device, dtype=torch.float32).div_(255.0)


def to_image(x: torch.Tensor) -> np.ndarray:
    return x[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
