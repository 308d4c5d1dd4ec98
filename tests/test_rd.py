"""Rate-distortion curves: MS-SSIM, the rows of `run_rd` (classical codecs at matching bytes), the
rd and plot commands end to end, and one-line errors for bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import semnet
from semnet.cli import plot as plot_cli
from semnet.cli import rd as rd_cli
from semnet.cli.main import cli
from semnet.cli.plot_rd import complete, families
from semnet.errors import ConfigError
from semnet.experiments import rd
from semnet.experiments.published import LABEL, PUBLISHED
from semnet.images import load_image
from semnet.models.metrics import MS_SSIM_MIN_SIDE, ms_ssim
from semnet.models.registry import build

DEMO = Path(semnet.__file__).parent / "demo_images"
CODEC = "cnn-c64-res-e50"
PNG = b"\x89PNG\r\n\x1a\n"


def crop(name: str) -> np.ndarray:
    """A 192 x 224 crop of a bundled photo: large enough for 5-scale MS-SSIM, still fast."""
    return np.ascontiguousarray(load_image(DEMO / f"{name}.png")[:192, :224])


@pytest.fixture(scope="module")
def images():
    return {"astronaut": crop("astronaut"), "chelsea": crop("chelsea")}


@pytest.fixture(scope="module")
def result(images):
    return rd.run_rd(images, [CODEC], ["jpeg"], datagram_size=1200, command="test")


def noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


def test_ms_ssim_is_one_on_identical_images_and_falls_with_noise():
    x = torch.rand(1, 3, 192, 200, generator=torch.Generator().manual_seed(1))
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    light, heavy = ms_ssim(noisy(x, 0.05), x), ms_ssim(noisy(x, 0.2), x)
    assert 0 < heavy < light < 1


def test_ms_ssim_is_none_below_five_scales():
    side = MS_SSIM_MIN_SIDE
    assert ms_ssim(torch.ones(1, 3, side - 1, 400), torch.ones(1, 3, side - 1, 400)) is None
    assert ms_ssim(torch.ones(1, 3, side, side), torch.ones(1, 3, side, side)) is not None


def test_classical_rows_fit_the_bytes_of_the_row_they_match(result, images):
    rows = result["rows"]
    ours = {r["image"]: r for r in rows if r["kind"] == "semnet"}
    matched = [r for r in rows if r["kind"] == "classical"]
    assert set(ours) == set(images) and len(matched) == len(images)
    assert not result["unmatched"]
    for r in matched:
        target = ours[r["image"]]
        assert r["codec"] == "jpeg" and r["matched_to"] == CODEC
        assert r["target_bytes"] == target["bytes_sent"] >= r["bytes_sent"]
        assert 1 <= r["quality"] <= 100
    for r in rows:
        h, w = images[r["image"]].shape[:2]
        assert r["bpp"] > 0 and r["bpp"] == pytest.approx(8 * r["bytes_sent"] / (h * w))
        assert r["datagrams"] >= 1 and r["bytes_sent"] <= r["datagrams"] * 1200
        assert 0 < r["ms_ssim"] <= 1 and r["psnr_db"] > 15


def test_result_is_json_with_its_metadata(result):
    assert json.loads(json.dumps(result)) == result
    assert result["kind"] == "rd" and result["command"] == "test"
    assert result["images"] == {"astronaut": [192, 224], "chelsea": [192, 224]}
    assert result["codecs"][CODEC]["name"] == CODEC
    assert result["codecs"][CODEC]["architecture"] == "cnn"
    assert set(result["classical"]) == {"jpeg"}
    names = {p["name"] for p in result["published"]}
    assert {"bmshj2018-factorized", "bmshj2018-hyperprior"} <= names
    assert all(p["label"] == LABEL and "Kodak" in p["label"] for p in result["published"])


def test_published_curves_hold_the_points_the_issue_quotes():
    factorized = next(p for p in PUBLISHED if p.name == "bmshj2018-factorized")
    assert (1.3512, 37.40, 0.9922) in factorized.points
    assert factorized.points[0][:2] == (0.1226, 26.91)
    for curve in PUBLISHED:
        assert curve.file.startswith("results/image/kodak/") and len(curve.commit) == 40
        assert [p[0] for p in curve.points] == sorted(p[0] for p in curve.points)


@pytest.fixture(scope="module")
def tiny_rd():
    """Two tiny random entropy-coded rate points of one family."""
    torch.manual_seed(0)
    models = {
        f"tiny-rd-q{i}": build("cnn-rd", {"hidden": 8, "bits": 6, "gain": g}).eval()
        for i, g in ((1, 2.0), (2, 8.0))
    }
    return lambda name: (models[name], 13, {"name": name, "architecture": "cnn-rd"})


def test_entropy_coded_rate_points_form_one_family(tiny_rd, images):
    codecs = ["tiny-rd-q1", "tiny-rd-q2"]
    result = rd.run_rd(images, codecs, [], datagram_size=300, load=tiny_rd)
    points = rd.rate_points(result["rows"])
    assert [p["codec"] for p in points] == codecs
    assert {p["family"] for p in points} == {"tiny-rd"}
    assert all(p["image_count"] == 2 and p["bpp"] > 0 for p in points)
    assert list(families(points)) == ["tiny-rd"]


def test_plot_draws_rate_points_and_published_curves(tiny_rd, images, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semnet.cli.plot_rd import plot_rd

    result = rd.run_rd(images, ["tiny-rd-q1", "tiny-rd-q2"], ["jpeg"], 300, load=tiny_rd)
    paths = plot_rd(plt, json.loads(json.dumps(result)), tmp_path)
    assert [p.name for p in paths] == ["rd_psnr.png", "rd_ms_ssim.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)


def test_a_rate_below_the_lowest_quality_is_listed_not_sent(images):
    target = {"image": "astronaut", "bytes_sent": 100, "codec": CODEC}
    rows, unmatched = rd.classical_rows("jpeg", [target], images, 1200)
    assert rows == []
    assert unmatched[0]["classical"] == "jpeg" and unmatched[0]["target_bytes"] == 100


def test_incomplete_points_are_not_drawn():
    points = [{"image_count": 2, "codec": "a"}, {"image_count": 1, "codec": "b"}]
    assert complete(points, 2) == ([points[0]], [points[1]])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"images": {}}, "no images"),
        ({"codecs": []}, "no semnet codec"),
        ({"codecs": ["nosuch"]}, "'nosuch'"),
        ({"codecs": ["jpeg"]}, "'jpeg' is classical"),
        ({"codecs": [CODEC, CODEC]}, "repeats"),
        ({"classical": ["jpeg+rs20"]}, "'jpeg\\+rs20'.*lossless"),
        ({"classical": ["gif"]}, "'gif'"),
        ({"datagram_size": 50}, "datagram size: 50"),
    ],
)
def test_bad_input_is_a_config_error_naming_the_value(images, changes, message):
    args = {"images": images, "codecs": [CODEC], "classical": ["jpeg"], **changes}
    with pytest.raises(ConfigError, match=message):
        rd.run_rd(**args)


@pytest.fixture(scope="module")
def runner():
    for command in (*rd_cli.COMMANDS, *plot_cli.COMMANDS):
        cli.add_command(command)
    return CliRunner()


def test_rd_and_plot_commands_end_to_end(runner, folder, tmp_path):
    out = tmp_path / "rd.json"
    args = ["rd", "--codec", CODEC, "--classical", "jpeg", "--images", str(folder)]
    result = runner.invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["kind"] == "rd" and data["command"].startswith(f"semnet rd --codec {CODEC}")
    assert len(data["rows"]) == 2 * 2  # (codec + jpeg) x images
    assert CODEC in result.stdout and "MS-SSIM" in result.stdout
    plots = tmp_path / "plots"
    result = runner.invoke(cli, ["plot", str(out), "--out", str(plots)])
    assert result.exit_code == 0, result.output
    for name in ["rd_psnr", "rd_ms_ssim"]:
        path = plots / f"{name}.png"
        assert path.read_bytes()[:8] == PNG
        with Image.open(path) as im:
            im.verify()
    assert not (plots / "psnr_vs_loss.png").exists()


def test_default_codecs_are_the_rd_family_and_the_default():
    from semnet.models import DEFAULT_CODEC, zoo

    names = rd.default_codecs()
    assert DEFAULT_CODEC in names
    family = {e.name for e in zoo.entries() if e.architecture == "cnn-rd"}
    assert set(names) - {DEFAULT_CODEC} == family - {DEFAULT_CODEC}


@pytest.mark.parametrize(
    "args",
    [
        ["--codec", "nosuch"],
        ["--codec", "jpeg"],
        ["--classical", "jpeg+rs10"],
        ["--classical", "jpeg,,webp"],
        ["--datagram-size", "abc"],
        ["--images", "EMPTY"],
    ],
)
def test_bad_flags_give_one_line_and_exit_2(runner, args, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    result = runner.invoke(cli, ["rd", *args, "--out", str(tmp_path / "rd.json")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("semnet: error: ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "rd.json").exists()
