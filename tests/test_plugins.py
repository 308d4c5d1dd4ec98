"""Bring your own codec (issue 17): plug-ins through entry points, extra zoos, codec ids across
zoos, weights checked against their manifest, training on a folder of one's own, importing
outside weights. Plug-ins are faked at the entry-point reader here; tests/test_plugin_example.py
installs a real one and runs it through the daemons."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from semnet.config import load
from semnet.daemons.config import ReceiverConfig, SenderConfig
from semnet.errors import ConfigError, ModelError, SemnetError
from semnet.models import plugins, registry, zoo, zoopath
from semnet.models import train as training
from semnet.models.cnn import CNNCodec
from semnet.models.codec import Codec, QuantDefaults
from semnet.models.config import ModelConfig


class Tiny(Codec):
    """A codec with no tanh: stride 4, a few channels."""

    def __init__(self, channels: int = 4, bits: int = 8) -> None:
        super().__init__(stride=4, bits=bits, channels=channels)
        self.encoder = nn.Conv2d(3, channels, 4, stride=4)
        self.decoder = nn.ConvTranspose2d(channels, 3, 4, stride=4)


def not_a_codec(**params):
    return nn.Identity()


def fake(monkeypatch, codecs=(), zoos=()) -> None:
    """Installed plug-ins: (entry-point name, package, object, or the exception loading it
    raises) for each group."""

    def declared(group: str):
        out = []
        for name, package, obj in codecs if group == plugins.CODECS else zoos:

            def loader(obj=obj):
                if isinstance(obj, Exception):
                    raise obj
                return obj

            value = f"{package.replace('-', '_')}:thing"
            out.append((plugins.Plugin(name, value, package, "1.0"), loader))
        return out

    monkeypatch.setattr(plugins, "declared", declared)
    zoo.refresh()


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.setenv(zoopath.ENV, "")  # restored after the test, whatever the test sets
    zoo.refresh()
    yield
    zoo.refresh()


def manifest(folder, name: str, codec_id: int, **extra) -> dict:
    """A zoo manifest (no weights needed to be listed or looked up)."""
    folder.mkdir(parents=True, exist_ok=True)
    e = {
        "name": name,
        "codec_id": codec_id,
        "architecture": "tiny",
        "params": {},
        "file": f"{name}-00000000.safetensors",
        "sha256": "0" * 64,
        "dtype": "float32",
        "command": "test",
        "config": {},
        "data_manifest_sha256": "",
        "steps": 0,
        **extra,
    }
    (folder / f"{name}.json").write_text(json.dumps(e))
    return e


def entry(name: str, codec_id: int, **extra) -> zoo.ZooEntry:
    return zoo.ZooEntry(
        name=name,
        codec_id=codec_id,
        architecture="tiny",
        params={"channels": 4},
        file="",
        sha256="",
        dtype="",
        command="test",
        config={},
        data_manifest_sha256="",
        steps=0,
        **extra,
    )


# -- plug-ins ------------------------------------------------------------------------------
def test_a_plugin_adds_an_architecture(monkeypatch):
    fake(monkeypatch, codecs=[("tiny", "tiny-codec", Tiny)])
    model = registry.build("tiny", {"channels": 3})
    assert isinstance(model, Tiny) and model.latent_channels == 3
    assert registry.architectures()["tiny"] == "tiny-codec"
    assert registry.architectures()["cnn"] == "built-in"
    with pytest.raises(ConfigError, match="params: .*unexpected keyword"):
        registry.build("tiny", {"nope": 1})
    with pytest.raises(ConfigError, match="unknown 'other'.*tiny"):
        registry.build("other", {})


def test_a_plugin_that_fails_is_reported_once_by_name_and_the_rest_works(monkeypatch, caplog):
    broken = ImportError("No module named 'nope'")
    fake(monkeypatch, codecs=[("broken", "broken-codec", broken), ("tiny", "tiny-codec", Tiny)])
    with caplog.at_level(logging.WARNING, logger="semnet.plugins"):
        for _ in range(3):
            assert isinstance(registry.build("tiny", {}), Tiny)
            with pytest.raises(ModelError, match="broken-codec.*ImportError: No module named"):
                registry.build("broken", {})
            assert zoo.entry(zoo.DEFAULT_CODEC).name == zoo.DEFAULT_CODEC
    reports = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(reports) == 1
    assert "'broken'" in reports[0] and "broken-codec 1.0" in reports[0]
    assert "ImportError: No module named 'nope'" in reports[0]
    assert "broken" not in registry.architectures()


def test_two_plugins_claiming_one_name_is_an_error_naming_both(monkeypatch):
    fake(
        monkeypatch,
        codecs=[("twin", "pkg-a", Tiny), ("twin", "pkg-b", Tiny), ("tiny", "tiny-codec", Tiny)],
    )
    with pytest.raises(ModelError) as err:
        registry.build("twin", {})
    assert "pkg-a 1.0 (pkg_a:thing)" in str(err.value)
    assert "pkg-b 1.0 (pkg_b:thing)" in str(err.value)
    assert isinstance(registry.build("tiny", {}), Tiny)


def test_a_plugin_cannot_replace_a_built_in_architecture_nor_build_a_non_codec(monkeypatch):
    fake(monkeypatch, codecs=[("cnn", "evil", Tiny), ("odd", "odd-codec", not_a_codec)])
    params = {"cbr": 1 / 48, "hidden": 8, "stride": 8}
    assert isinstance(registry.build("cnn", params), CNNCodec)
    assert registry.architectures()["cnn"] == "built-in"
    assert "built into semnet" in registry.plugin_architectures()["cnn"].error
    with pytest.raises(ModelError, match="built a Identity, not a semnet Codec"):
        registry.build("odd", {})


def test_a_plugin_can_ship_a_zoo(monkeypatch, tmp_path):
    manifest(tmp_path / "shipped", "from-plugin", 4200)
    fake(monkeypatch, zoos=[("weights", "zoo-pkg", str(tmp_path / "shipped"))])
    assert zoo.source("from-plugin") == "plug-in zoo-pkg"
    assert zoo.zoos()[-1].source == "built-in"


# -- zoos ----------------------------------------------------------------------------------
def test_an_extra_zoo_is_searched_first_and_its_weights_must_match_their_manifest(
    monkeypatch, tmp_path
):
    fake(monkeypatch, codecs=[("tiny", "tiny-codec", Tiny)])
    folder = tmp_path / "zoo"
    monkeypatch.setenv(zoopath.ENV, str(folder))
    folder.mkdir()
    torch.manual_seed(0)
    model = Tiny()
    quant = {"kind": "asymmetric", "bits": 6}
    written = zoo.export(model, entry("mine", 5000, quant=quant), torch.float32, folder)
    assert zoo.entry("mine").codec_id == 5000 and zoo.entry_by_id(5000).name == "mine"
    assert zoo.source("mine") == str(folder) and zoo.source("cnn-c64") == "built-in"
    loaded = zoo.load("mine")
    assert loaded.quant == QuantDefaults("asymmetric", 6, -1.0, 1.0)  # the manifest's choice
    assert torch.equal(loaded.encoder.weight, model.encoder.weight)
    assert "data_manifest" not in json.loads((folder / "mine.json").read_text())  # unset: left out

    weights = folder / written.file
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    zoo.refresh()
    with pytest.raises(ModelError, match="refused, its sha256 .* is not the manifest's"):
        zoo.load("mine")


def test_a_manifest_path_names_its_codec_here_and_in_the_daemons_started_here(
    monkeypatch, tmp_path
):
    manifest(tmp_path / "zoo", "mine", 5001)
    with pytest.raises(ModelError, match="'mine' is not in the zoo"):
        zoo.entry("mine")
    path = tmp_path / "zoo" / "mine.json"
    assert zoo.rate_point(str(path)) == "mine"
    assert zoo.entry(str(path)).codec_id == 5001 == zoo.entry("mine").codec_id
    assert zoopath.paths()[0] == path.resolve()  # what a daemon started from here inherits
    with pytest.raises(ModelError, match="no such manifest"):
        zoo.entry(str(tmp_path / "other.json"))


def test_codec_ids_of_extra_zoos_are_their_own_and_collisions_name_both(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    manifest(a, "taken", 7)  # a built-in codec's id, under another name
    manifest(a, "cnn-c64", 1)  # a built-in codec's id to replace it: fine
    manifest(a, "one", 6000)
    manifest(b, "two", 6000)  # another zoo, the same id
    manifest(b, "fine", 6001)
    (b / "broken.json").write_text("{")
    monkeypatch.setenv(zoopath.ENV, os.pathsep.join([str(a), str(b)]))
    with pytest.raises(ModelError, match="codec id 7 .*is not for this zoo.*4096..65279"):
        zoo.entry("taken")
    assert zoo.source("cnn-c64") == str(a) and zoo.entry_by_id(1).name == "cnn-c64"
    for name in ("one", "two"):
        with pytest.raises(ModelError) as err:
            zoo.entry(name)
        assert str(a / "one.json") in str(err.value) and str(b / "two.json") in str(err.value)
    with pytest.raises(ModelError, match="codec id 6000 is claimed by one .* and two"):
        zoo.entry_by_id(6000)
    assert zoo.entry("fine").codec_id == 6001  # the rest of the zoos works
    assert any("broken.json: invalid JSON" in p for p in zoo.catalog().problems)
    # a new entry is checked before any training
    with pytest.raises(ModelError, match="4096..65279"):
        zoo.check_new("new", 20, tmp_path / "c")
    with pytest.raises(ModelError, match="codec id 6001 is fine's"):
        zoo.check_new("new", 6001, tmp_path / "c")
    assert zoo.check_new("new", 6002, tmp_path / "c") == (tmp_path / "c").resolve()


def test_zoo_paths_and_the_daemon_zoo_key(tmp_path):
    (tmp_path / "z").mkdir()
    cfg = load(SenderConfig, {"zoo": str(tmp_path / "z")})
    assert zoopath.as_list(cfg.zoo) == (str(tmp_path / "z"),)
    cfg = load(ReceiverConfig, {"zoo": [str(tmp_path / "z")]})
    assert zoopath.as_list(cfg.zoo) == (str(tmp_path / "z"),)
    with pytest.raises(ConfigError, match=r"^zoo: .*missing does not exist$"):
        load(ReceiverConfig, {"zoo": [str(tmp_path / "missing")]})
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match="neither a zoo folder nor a .json manifest"):
        load(SenderConfig, {"zoo": str(tmp_path / "notes.txt")})
    zoopath.use([tmp_path / "z"])
    zoopath.use([tmp_path / "z"])  # once only, first
    assert zoopath.paths() == ((tmp_path / "z").resolve(),)


def test_the_local_testbed_gives_both_daemons_the_same_zoos(tmp_path):
    from semnet.testbed import shared_zoos

    manifest(tmp_path / "z", "mine", 5002)
    codec = str(tmp_path / "z" / "mine.json")
    sender = {"codec": codec, "zoo": [str(tmp_path / "z")]}
    receiver = {"zoo": str(tmp_path / "y")}
    assert shared_zoos(sender, receiver) == [str(tmp_path / "z"), str(tmp_path / "y"), codec]
    assert shared_zoos({"codec": "cnn-c64"}, {}) == []


# -- the CLI -------------------------------------------------------------------------------
def semnet(*args: str):
    from semnet.cli.main import cli
    from semnet.cli.train import train
    from semnet.cli.zoo_commands import zoo

    cli.add_command(train)
    cli.add_command(zoo)
    return CliRunner().invoke(cli, list(args))


def test_zoo_list_says_where_each_codec_comes_from(monkeypatch, tmp_path):
    fake(monkeypatch, codecs=[("tiny", "tiny-codec", Tiny), ("bad", "bad-codec", OSError("x"))])
    manifest(tmp_path / "z", "mine", 5003)
    result = semnet("--zoo", str(tmp_path / "z"), "zoo", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[-1] == "source"
    mine = next(line for line in lines if line.split()[:1] == ["mine"])
    assert mine.split()[-1] == str(tmp_path / "z")
    assert next(line for line in lines if "cnn-c64 " in line).split()[-1] == "built-in"
    assert any(line.split()[:3] == ["tiny", "tiny-codec", "1.0"] for line in lines)
    assert any(line.split()[:2] == ["bad", "bad-codec"] and "OSError" in line for line in lines)
    listed = json.loads(semnet("zoo", "list", "--json").output)
    assert {"mine": str(tmp_path / "z")}.items() <= {
        i["name"]: i["source"] for i in listed if i["kind"] == "codec"
    }.items()
    assert semnet("--zoo", str(tmp_path / "missing"), "zoo", "list").exit_code == 2


def test_zoo_import_makes_outside_weights_an_entry(monkeypatch, tmp_path):
    fake(monkeypatch, codecs=[("tiny", "tiny-codec", Tiny)])
    torch.manual_seed(1)
    outside = Tiny(channels=4)
    state = {k: v for k, v in outside.state_dict().items() if k != "channel_mean"}
    save_file(state, tmp_path / "w.safetensors")
    config = tmp_path / "cfg.yaml"
    config.write_text("name: outside\ncodec_id: 4500\nparams: {channels: 4}\n")
    picture = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    monkeypatch.setattr("semnet.eval_images.eval_images", lambda: {"noise": picture})
    args = ["--weights", str(tmp_path / "w.safetensors"), "--config", str(config)]
    zoo_dir = str(tmp_path / "zoo")
    result = semnet("zoo", "import", "--architecture", "tiny", *args, "--zoo", zoo_dir, "--measure")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "zoo" / "outside.json").read_text())
    assert written["architecture"] == "tiny" and written["codec_id"] == 4500
    assert written["command"].startswith("semnet ") and written["steps"] == 0
    assert written["metrics"]["images"] == ["noise"]
    assert zoo.source("outside") == str((tmp_path / "zoo").resolve())
    assert torch.equal(zoo.load("outside").decoder.weight, outside.decoder.weight)

    save_file(Tiny(channels=5).state_dict(), tmp_path / "other.safetensors")
    args[1] = str(tmp_path / "other.safetensors")
    result = semnet("zoo", "import", "--architecture", "tiny", *args, "--zoo", zoo_dir)
    assert result.exit_code == 2
    assert "do not fit 'tiny' (other shape:" in result.output
    assert "encoder.weight (5, 3, 4, 4) (needs (4, 3, 4, 4))" in result.output
    assert len(result.output.strip().splitlines()) == 1


# -- training data ------------------------------------------------------------------------
def picture(path, seed: int) -> None:
    """A generated image (a gradient with noise): never a library's sample photo."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:40, 0:40] / 40
    rng = np.random.default_rng(seed)
    image = np.stack([x, y, 1 - x], axis=-1) * 200 + rng.normal(0, 20, (40, 40, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)


def test_training_data_is_every_image_in_a_folder_and_below(tmp_path):
    root = tmp_path / "photos"
    picture(root / "b.png", 1)
    picture(root / "trip" / "a.jpg", 2)
    picture(root / ".cache" / "thumb.png", 3)  # hidden: left out
    (root / "notes.txt").write_text("not an image")
    data = training.folder_data(root)
    assert [m["file"] for m in data.manifest] == ["b.png", "trip/a.jpg"]
    assert data.files == [str(root / "b.png"), str(root / "trip" / "a.jpg")]
    moved = shutil.copytree(root, tmp_path / "elsewhere")
    assert training.folder_data(moved).manifest_sha256 == data.manifest_sha256


def test_missing_training_data_is_one_line_saying_what_installs_it(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(SemnetError, match="make train-data") as err:
            training.training_data(folder)
        assert "\n" not in str(err.value)
    listed = tmp_path / "photos.json"
    listed.write_text(json.dumps([{"file": str(tmp_path / "gone.jpg"), "sha256": "", "size": 0}]))
    monkeypatch.setattr(training, "DATA_MANIFEST", listed)
    with pytest.raises(SemnetError, match=r"not installed \(1 of 1 missing.*`make train-data`"):
        training.training_data(None)
    config = tmp_path / "cfg.yaml"
    config.write_text("name: t\ncodec_id: 4100\narchitecture: cnn\n")
    result = semnet("train", "--config", str(config), "--data", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert result.output.startswith("semnet: error: training data ")
    assert "make train-data" in result.output and len(result.output.splitlines()) == 1


def test_a_model_config_can_name_its_data_and_choose_its_quantizer():
    cfg = load(
        ModelConfig,
        {
            "name": "x",
            "codec_id": 4100,
            "architecture": "cnn",
            "data": "photos",
            "quant": {"kind": "asymmetric", "bits": 8},
        },
    )
    assert cfg.data == "photos" and cfg.quant.as_dict() == {"kind": "asymmetric", "bits": 8}
    with pytest.raises(ConfigError, match="quant: a round quantizer sets its own range"):
        load(ModelConfig, {"name": "x", "codec_id": 1, "architecture": "cnn",
                           "quant": {"kind": "round", "bits": 4, "lo": 0.0}})  # fmt: skip
    with pytest.raises(ConfigError, match="name: '../x' must be"):
        load(ModelConfig, {"name": "../x", "codec_id": 1, "architecture": "cnn"})
    with pytest.raises(ConfigError, match="entropy-coded codec's tables fix its quantizer"):
        registry.build("cnn-rd", {}, {"kind": "asymmetric", "bits": 8})


def test_training_noise_follows_each_images_own_range_with_the_asymmetric_quantizer():
    y = torch.stack([torch.linspace(-1, 1, 64), torch.linspace(0, 255, 64)]).view(2, 4, 4, 4)
    step = training.noise_step(QuantDefaults("asymmetric", 8, -1.0, 1.0), y)
    assert step.shape == (2, 1, 1, 1)
    assert torch.allclose(step.flatten(), torch.tensor([2 / 255, 1.0]))
    assert training.noise_step(QuantDefaults("uniform", 5, -1.0, 1.0), y) == 2 / 31
