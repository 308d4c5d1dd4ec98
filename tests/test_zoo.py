"""What ships in the zoo: every checkpoint is the file its manifest names, loads into its
architecture, and carries what reproduces it (config, command, data hash) and what it measured."""

import hashlib
from pathlib import Path

import pytest
import yaml

from semnet.models import zoo
from semnet.models.config import load_model_config

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
    assert model.latent_channels == 64 and model.quant.bits == 5  # the fair-comparison setting


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_manifest_says_how_it_was_made_and_what_it_measured(entry):
    # the config in the repo is the one it was trained with
    assert entry.config == yaml.safe_load((CONFIGS / f"{entry.name}.yaml").read_text())
    cfg = load_model_config(CONFIGS / f"{entry.name}.yaml")
    assert (cfg.architecture, cfg.codec_id, cfg.params) == (
        entry.architecture, entry.codec_id, entry.params)  # fmt: skip
    assert entry.command.startswith(f"semnet train --config configs/models/{entry.name}.yaml")
    assert entry.steps == cfg.train.steps
    assert len(entry.data_manifest_sha256) == 64
    if cfg.train.init_from is not None:
        parent = zoo.entry(cfg.train.init_from)
        assert entry.lineage[-1]["sha256"] == parent.sha256
    lossless = entry.metrics["by_loss"]["0"]
    assert 15 < lossless["psnr_db"] < 40 and 0 < entry.metrics["bpp_on_wire"] < 2
