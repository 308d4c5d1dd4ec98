"""The worked example of docs/plugins.md, end to end (issue 17): examples/plugin-codec installed
into this environment with pip (offline, as a user would), trained for a few steps on a folder
of generated images, exported to a zoo of its own, listed, and an image sent through the real
sender, proxy and receiver processes with it. Every semnet process here is a fresh one: they
find the plug-in through its entry point, nothing is patched in.

The example is installed from a clean copy (pip builds in the source folder) and uninstalled
afterwards unless it was installed before; an editable install of it is used as it is."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semnet.testbed import LocalTestbed

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin-codec"
PACKAGE = "semnet-example-codec"
ENV = {k: v for k, v in os.environ.items() if k != "SEMNET_ZOO"}


def python(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def installed_version() -> tuple[str, bool] | None:
    """(version, editable) of the example installed here, or None."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    return dist.version, bool(direct.get("dir_info", {}).get("editable"))


def can_build_offline() -> bool:
    """--no-build-isolation builds with this environment's setuptools: it needs 70.1 or later
    (which builds wheels itself) or the `wheel` package. torch depends on setuptools."""
    try:
        major, minor = (int(x) for x in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """The example's folder (a clean copy), installed into this environment."""
    before = installed_version()
    copy = tmp_path_factory.mktemp("example") / "plugin-codec"
    shutil.copytree(
        EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    if before is None or not before[1]:
        if not can_build_offline():
            pytest.fail("installing the example needs setuptools >= 70.1 (or wheel) in the venv")
        result = python(
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--force-reinstall",
            str(copy),
        )
        assert result.returncode == 0, result.stderr
    yield copy
    if before is None:
        python("-m", "pip", "uninstall", "--quiet", "--yes", PACKAGE)


def generated(path: Path, seed: int, size: int = 96) -> np.ndarray:
    """A gradient with noise, written as PNG: training material that is nobody's photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.random(3)
    image = (np.stack([x, y, (x + y) / 2], axis=-1) + phase) % 1 * 220
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return image


def test_the_example_plugin_trains_exports_and_crosses_the_daemons(example, tmp_path):
    photos, zoo_dir = tmp_path / "photos", tmp_path / "zoo"
    for i, name in enumerate(["a.png", "b.png", "more/c.png", "more/deeper/d.png"]):
        generated(photos / name, seed=i)
    trained = python(
        "-m",
        "semnet",
        "train",
        "--config",
        str(example / "tiny-ae.yaml"),
        "--data",
        str(photos),
        "--zoo",
        str(zoo_dir),
        "--steps",
        "3",
        "--run-dir",
        str(tmp_path / "run"),
        "--threads",
        "1",
        "--no-measure",
    )
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads((zoo_dir / "tiny-ae.json").read_text())
    assert (manifest["architecture"], manifest["codec_id"], manifest["steps"]) == (
        "tiny-ae",
        4097,
        3,
    )
    assert manifest["quant"] == {"kind": "asymmetric", "bits": 8}  # the config's choice
    files = [m["file"] for m in manifest["data_manifest"]]
    assert files == ["a.png", "b.png", "more/c.png", "more/deeper/d.png"]
    assert (zoo_dir / manifest["file"]).is_file()

    listed = python("-m", "semnet", "--zoo", str(zoo_dir), "zoo", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    row = next(line.split() for line in lines if line.split()[:1] == ["tiny-ae"])
    assert row[1] == "4097" and row[-1] == str(zoo_dir.resolve())
    assert any(line.split() == ["tiny-ae", PACKAGE, "0.1.0", "ok"] for line in lines)

    image = generated(tmp_path / "sent.png", seed=9, size=64)
    sender = {"codec": "tiny-ae", "zoo": [str(zoo_dir)], "threads": 1}
    receiver = {"zoo": [str(zoo_dir)], "threads": 1, "perceptual": False}
    with LocalTestbed(tmp_path / "bed", sender=sender, receiver=receiver) as bed:
        report = bed.send(image, "sent.png")
    assert "error" not in report, report
    assert report["codec"] == "tiny-ae"
    assert report["datagrams_received"] == report["datagrams_sent"] > 0
    assert report["psnr_db"] is not None and Path(report["saved"]).is_file()
