"""What ships in the zoo: every checkpoint is the file its manifest names, loads into its
architecture, and carries what reproduces it (config, command, data hash) and what it measured."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from semnet.errors import ModelError
from semnet.models import zoo
from semnet.models.config import load_any_config, train_command

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "models"
ENTRIES = zoo.entries()


def test_codec_ids_and_names_are_unique():
    assert len({e.codec_id for e in ENTRIES}) == len({e.name for e in ENTRIES}) == len(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_checkpoint_matches_its_manifest(entry):
    path = zoo.ZOO_DIR / entry.file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    assert entry.file == f"{entry.name}-{entry.sha256[:8]}.safetensors"
    model = zoo.load(entry.name)
    if entry.architecture == "cnn-rd":  # entropy coded: the table codes its whole alphabet
        assert model.entropy_table().shape == (model.latent_channels, 2**model.quant.bits)
    elif entry.architecture == "mijscc":  # multi-task (docs/multitask.md): its own data and size
        assert model.quant.kind == "asymmetric" and len(model.class_names) > 1
    elif entry.architecture == "bsc":  # bit-planes through BSCs (docs/interface.md)
        assert model.interface().shape == (model.latent_channels, model.quant.bits)
    else:
        assert model.latent_channels == 64 and model.quant.bits == 5  # the fair comparison


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_manifest_says_how_it_was_made_and_what_it_measured(entry):
    # the config in the repo is the one it was trained with
    assert entry.config == yaml.safe_load((CONFIGS / f"{entry.name}.yaml").read_text())
    cfg = load_any_config(CONFIGS / f"{entry.name}.yaml")
    command = train_command(entry.architecture)
    assert (cfg.architecture, cfg.codec_id, cfg.params) == (
        entry.architecture, entry.codec_id, entry.params)  # fmt: skip
    assert entry.command.startswith(f"semnet {command} --config configs/models/{entry.name}.yaml")
    assert entry.steps == cfg.train.steps
    assert len(entry.data_manifest_sha256) == 64
    if getattr(cfg.train, "init_from", None) is not None:
        parent = zoo.entry(cfg.train.init_from)
        assert entry.lineage[-1]["sha256"] == parent.sha256
    if entry.architecture == "mijscc":  # 28x28 Fashion-MNIST: its own measurements
        assert entry.metrics["fashion_mnist"]["by_loss"]["0"]["accuracy"] >= 0.85
        return
    if entry.architecture == "bsc":  # bits through BSCs (docs/interface.md): its interface
        assert 15 < entry.metrics["psnr_db_clean_bits"] < 40
        assert "interface" in entry.metrics
        return
    lossless = entry.metrics["by_loss"]["0"]
    assert 15 < lossless["psnr_db"] < 40 and 0 < entry.metrics["bpp_on_wire"] < 2


def test_rate_points_are_picked_by_quality_or_bpp():
    points = zoo.rate_points(zoo.RATE_FAMILY)
    assert len(points) >= 4 and all(e.architecture == "cnn-rd" for e in points.values())
    rates = [e.metrics["bpp_on_wire"] for e in points.values()]
    assert rates == sorted(rates)  # quality N+1 costs more bytes than quality N
    assert zoo.rate_point("cnn-rd", quality=2) == "cnn-rd-q2"
    assert zoo.rate_point(zoo.DEFAULT_CODEC, quality=1) == "cnn-rd-q1"  # default: the family
    assert zoo.rate_point("cnn-rd-q3", quality=1) == "cnn-rd-q1"  # a point: its family
    assert zoo.rate_point("cnn-c64") == "cnn-c64"
    best = max(q for q, b in zip(points, rates, strict=True) if b <= rates[1] + 1e-9)
    assert zoo.rate_point("cnn-rd", bpp=rates[1] + 1e-9) == f"cnn-rd-q{best}"
    assert zoo.rate_point("cnn-rd", bpp=0.001) == "cnn-rd-q1"  # nothing fits: the smallest
    with pytest.raises(ModelError, match="has qualities"):
        zoo.rate_point("cnn-rd", quality=99)
    with pytest.raises(ModelError, match="no rate points"):
        zoo.rate_point("cnn-c64", quality=1)
    with pytest.raises(ModelError, match="not both"):
        zoo.rate_point("cnn-rd", quality=1, bpp=1.0)


def test_zoo_list_has_a_header_and_marks_the_default_codec():
    from click.testing import CliRunner

    from semnet.cli.zoo_commands import zoo as zoo_command

    result = CliRunner().invoke(zoo_command, ["list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["codec", "id", "architecture"]
    marked = [line.split()[1] for line in lines if line.startswith("* ") and "default" not in line]
    assert marked == [zoo.DEFAULT_CODEC]
    assert any(line.split()[:2] == ["imputer", "for"] for line in lines)
    listed = CliRunner().invoke(zoo_command, ["list", "--json"])
    defaults = [e["name"] for e in json.loads(listed.output) if e.get("default")]
    assert defaults == [zoo.DEFAULT_CODEC]


def test_writing_an_entry_keeps_the_weights_of_an_entry_whose_name_it_prefixes(tmp_path):
    """cnn-c64's new weights replace its old ones, never cnn-c64-res's."""
    model = torch.nn.Linear(2, 2)
    longer, _ = zoo._save_weights(model, tmp_path, "cnn-c64-res", torch.float16)
    old, _ = zoo._save_weights(model, tmp_path, "cnn-c64", torch.float16)
    torch.nn.init.zeros_(model.weight)
    new, _ = zoo._save_weights(model, tmp_path, "cnn-c64", torch.float16)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == sorted([longer, new])
    assert old != new
