"""The semantic-accuracy classifier recognises real photos and agrees with itself."""

import numpy as np
import pytest
import torch

from semnet.models import classifier
from semnet.pipeline.tensors import to_tensor

pytestmark = pytest.mark.skipif(
    not classifier.available(), reason="classifier not installed (make metrics-extra)"
)
CPU = torch.device("cpu")
ESPRESSO = 967
DOMESTIC_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_recognises_real_photos():
    from skimage import data

    assert classifier.top1(to_tensor(data.coffee(), CPU)) == ESPRESSO
    assert classifier.top1(to_tensor(data.chelsea(), CPU)) in DOMESTIC_CATS
    assert classifier.class_name(ESPRESSO).lower() == "espresso"


def test_agreement():
    from skimage import data

    cat = to_tensor(data.chelsea(), CPU)
    assert classifier.agrees(cat, cat)
    assert not classifier.agrees(to_tensor(data.coffee()[:300, :451], CPU), cat)
    noise = torch.from_numpy(np.random.default_rng(0).random((1, 3, 300, 451), np.float32))
    assert not classifier.agrees(noise, cat)
