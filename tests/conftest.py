"""Shared test settings."""

import pytest
import torch

# One torch thread: on a 2-core machine small tensor ops are far faster single-threaded, and the
# integration tests run their daemons with threads: 1 so online and offline decode the same way.
torch.set_num_threads(1)


@pytest.fixture
def folder(tmp_path, images):
    """A folder holding the test module's ``images`` fixture as PNG files."""
    from semnet.images import save_png

    for name, image in images.items():
        save_png(image, tmp_path / "images" / f"{name}.png")
    return tmp_path / "images"


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need CUDA: without it they are skipped, saying so, not failed."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch sees no GPU)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
