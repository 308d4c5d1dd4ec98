"""Typed configs: unknown keys, wrong types and out-of-range values are ConfigErrors naming them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from semnet.config import check, load, read_yaml
from semnet.daemons.config import ProxyConfig, ReceiverConfig, SenderConfig, load_config
from semnet.errors import ConfigError
from semnet.models.config import (
    ModelConfig,
    TrainSettings,
    load_any_config,
    load_model_config,
    train_command,
)

REPO = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = sorted((REPO / "configs" / "models").glob("*.yaml"))


@dataclass(frozen=True)
class Inner:
    size: int = field(default=4, metadata=check(lambda v: v > 0, "must be > 0"))
    ratio: float = 0.5


@dataclass(frozen=True)
class Outer:
    name: str
    count: int = 1
    scale: float = 1.0
    flag: bool = False
    label: str | None = None
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def error(cls: type, data: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(cls, data)
    return str(info.value)


# --- small dataclasses -----------------------------------------------------------------------


def test_load_builds_and_converts():
    cfg = load(
        Outer,
        {"name": "a", "count": 3, "scale": 2, "label": None, "sizes": [4, 5], "inner": {"size": 9}},
    )
    assert cfg == Outer(name="a", count=3, scale=2.0, label=None, sizes=(4, 5), inner=Inner(9))
    assert isinstance(cfg.scale, float) and isinstance(cfg.sizes, tuple)
    assert load(Outer, {"name": "b"}) == Outer(name="b")


def test_unknown_key_is_named_with_the_known_ones():
    message = error(Outer, {"name": "a", "cuont": 2})
    assert message.startswith("cuont:") and "unknown" in message
    assert "count" in message and "sizes" in message


def test_missing_required_key():
    assert error(Outer, {"count": 2}).startswith("name:")


@pytest.mark.parametrize(
    ("key", "value", "type_name"),
    [
        ("count", "3", "int"),  # str for int
        ("count", True, "int"),  # bool for int (bool is an int subclass in Python)
        ("count", 1.5, "int"),
        ("scale", "1.0", "float"),
        ("scale", False, "float"),  # bool for float
        ("flag", 1, "bool"),
        ("name", 7, "str"),
        ("label", 3, "str"),  # Optional[str]
    ],
)
def test_wrong_type_names_key_and_type(key, value, type_name):
    data = {"name": "a", key: value}
    message = error(Outer, data)
    assert message.startswith(f"{key}:")
    assert f"must be {type_name}" in message and type(value).__name__ in message


def test_out_of_range_names_the_key():
    message = error(Outer, {"name": "a", "inner": {"size": 0}})
    assert message.startswith("inner.size:") and "must be > 0" in message


def test_nested_keys_are_dotted():
    assert error(Outer, {"name": "a", "inner": {"size": "4"}}).startswith("inner.size:")
    assert error(Outer, {"name": "a", "inner": {"bogus": 1}}).startswith("inner.bogus:")
    assert error(Outer, {"name": "a", "sizes": [1, "x"]}).startswith("sizes[1]:")
    assert error(Outer, {"name": "a", "sizes": 3}).startswith("sizes:")


def test_nested_non_mapping_names_the_section():
    assert error(Outer, {"name": "a", "inner": [1, 2]}).startswith("inner:")


def test_top_level_non_mapping():
    assert "must be a mapping" in error(Outer, [1, 2])


# --- the real daemon configs ------------------------------------------------------------------


def test_daemon_defaults_load():
    for cls in (SenderConfig, ProxyConfig, ReceiverConfig):
        assert load(cls, {}) == cls()
        assert load(cls, None) == cls()


def test_sender_config_values():
    cfg = load(
        SenderConfig,
        {
            "data_to": "[::1]:9000",
            "datagram_size": 1400,
            "bits": 6,
            "quant": "asymmetric",
            "rate_mbps": 50,
        },
    )
    assert cfg.data_to == "[::1]:9000" and cfg.datagram_size == 1400 and cfg.bits == 6
    assert cfg.rate_mbps == 50.0 and isinstance(cfg.rate_mbps, float)


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (SenderConfig, "datagram_size", 99),
        (SenderConfig, "datagram_size", 65508),
        (SenderConfig, "stream", 65536),
        (SenderConfig, "seed", -1),
        (SenderConfig, "rate_mbps", 0),
        (SenderConfig, "threads", -1),
        (ProxyConfig, "seed", 2**32),
        (ReceiverConfig, "deadline", -0.5),
        (ReceiverConfig, "deadline", 0),
        (ReceiverConfig, "max_frames", 0),
    ],
)
def test_daemon_out_of_range_names_the_key(cls, key, value):
    message = error(cls, {key: value})
    assert message.startswith(f"{key}:") and repr(value) in message


@pytest.mark.parametrize(
    ("cls", "key", "value"),
    [
        (SenderConfig, "datagram_size", "1200"),
        (SenderConfig, "interleave", "yes"),
        (SenderConfig, "stream", True),
        (ReceiverConfig, "deadline", "0.5"),
        (ReceiverConfig, "save_images", 0),
        (ProxyConfig, "impair", 5),
        (ReceiverConfig, "listen", 7200),
    ],
)
def test_daemon_wrong_type_names_the_key(cls, key, value):
    message = error(cls, {key: value})
    assert message.startswith(f"{key}:") and "must be" in message


@pytest.mark.parametrize("cls", [SenderConfig, ProxyConfig, ReceiverConfig])
def test_daemon_unknown_key(cls):
    message = error(cls, {"deadlien": 1})
    assert message.startswith("deadlien:") and "unknown" in message


@pytest.mark.parametrize("address", ["127.0.0.1:70000", "localhost", ":7200", "host:port"])
def test_bad_address_is_a_config_error(address):
    message = error(ReceiverConfig, {"listen": address})
    assert repr(address) in message


@pytest.mark.parametrize(
    ("cls", "key"), [(ReceiverConfig, "listen"), (SenderConfig, "data_to"), (ProxyConfig, "http")]
)
def test_bad_address_names_the_key(cls, key):
    """Port 70000 is out of range: the error names the field, not a generic 'address'."""
    assert error(cls, {key: "127.0.0.1:70000"}).startswith(f"{key}:")
    assert load(cls, {key: "127.0.0.1:65535"}) is not None


def test_proxy_impair_takes_a_string_or_a_mapping():
    assert load(ProxyConfig, {"impair": "loss random 10%"}).impair == "loss random 10%"
    spec = {"loss": {"random": {"percent": "10%"}}}
    assert load(ProxyConfig, {"impair": spec}).impair == spec
    with pytest.raises(ConfigError, match=r"^impair: .*expected a mapping"):
        load(ProxyConfig, {"impair": {"loss": {"random": "10%"}}})  # checked at load, not later


def test_load_config_file_then_overrides(tmp_path):
    path = tmp_path / "receiver.yaml"
    path.write_text("listen: 127.0.0.1:7300\ndeadline: 0.25\nfill: mean\n")
    cfg = load_config(ReceiverConfig, str(path), {"deadline": 0.75, "fill": None})
    assert cfg.listen == "127.0.0.1:7300"
    assert cfg.deadline == 0.75  # the flag wins
    assert cfg.fill == "mean"  # a None override leaves the file's value
    with pytest.raises(ConfigError, match=r"^deadline:"):
        load_config(ReceiverConfig, str(path), {"deadline": -1.0})


# --- the model configs ------------------------------------------------------------------------


MODEL = {"name": "tiny", "codec_id": 9, "architecture": "cnn"}


def test_model_config_defaults_and_nested_train():
    cfg = load(ModelConfig, {**MODEL, "train": {"batch": 4, "scales": [256, 512]}})
    assert cfg.train == TrainSettings(batch=4, scales=(256, 512))
    assert cfg.params == {}


@pytest.mark.parametrize(
    ("train", "key"),
    [
        ({"batch": "8"}, "train.batch"),
        ({"batch": True}, "train.batch"),
        ({"batch": 0}, "train.batch"),
        ({"crop": 100}, "train.crop"),
        ({"erasure_max": 1.5}, "train.erasure_max"),
        ({"lr": -1e-3}, "train.lr"),
        ({"scales": [512, "a"]}, "train.scales[1]"),
        ({"stpes": 10}, "train.stpes"),
    ],
)
def test_model_config_nested_errors_are_dotted(train, key):
    assert error(ModelConfig, {**MODEL, "train": train}).startswith(f"{key}:")


@pytest.mark.parametrize(("key", "value"), [("codec_id", 0), ("codec_id", 65536), ("name", 1)])
def test_model_config_top_level_errors(key, value):
    assert error(ModelConfig, {**MODEL, key: value}).startswith(f"{key}:")


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.stem)
def test_shipped_model_configs_load(path):
    cfg = load_any_config(path)  # each by the loader of the command that trains it
    assert cfg.name == path.stem
    assert 0 < cfg.codec_id < 65536 and cfg.architecture
    assert f"semnet {train_command(cfg.architecture)} --config" in path.read_text()  # says how
    if hasattr(cfg.train, "crop"):  # photo crops (Fashion-MNIST trains on whole images)
        assert cfg.train.crop % 16 == 0


def test_default_model_config_values():
    path = REPO / "configs" / "models" / "cnn-c64.yaml"
    if not path.exists():
        pytest.skip("configs/models/cnn-c64.yaml not present")
    cfg = load_model_config(path)
    assert (cfg.codec_id, cfg.architecture) == (1, "cnn")
    assert cfg.params["hidden"] == 96 and cfg.params["bits"] == 5
    assert round(cfg.params["cbr"] * 3 * 256) == 64


def test_model_config_file_with_a_bad_nested_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\ncodec_id: 3\narchitecture: cnn\ntrain:\n  batch: eight\n")
    with pytest.raises(ConfigError, match=r"^train\.batch: must be int, got str"):
        load_model_config(path)


# --- read_yaml ----------------------------------------------------------------------------------


def test_read_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: b: c\n", "key: 'unterminated\n", "\t- x\n"])
def test_read_yaml_invalid(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "3\n"])
def test_read_yaml_top_level_must_be_a_mapping(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_yaml(path)


def test_read_yaml_empty_is_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert read_yaml(path) == {}


def test_read_yaml_is_safe(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml(path)


def test_load_config_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(SenderConfig, str(tmp_path / "missing.yaml"), {})


# --- hardening keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "key", "value", "why"),
    [
        (SenderConfig, "first_frame", 2**32, "must be a u32"),
        (SenderConfig, "first_frame", -1, "must be a u32"),
        (SenderConfig, "first_frame", "0", "must be int"),
        (SenderConfig, "auth_key_file", 5, "must be str"),
        (ReceiverConfig, "auth_key_env", ["KEY"], "must be str"),
        (ReceiverConfig, "max_stream_frames", 0, "must be > 0"),
        (ReceiverConfig, "max_pixels", -1, "must be > 0"),
        (ReceiverConfig, "max_reference_bytes", 1.5, "must be int"),
    ],
)
def test_hardening_keys_are_validated(cls, key, value, why):
    message = error(cls, {key: value})
    assert message.startswith(f"{key}:") and why in message


def test_auth_keys_default_off_and_control_ports_on_loopback():
    for cls in (SenderConfig, ReceiverConfig):
        cfg = cls()
        assert cfg.auth_key_file is None and cfg.auth_key_env is None
        assert cfg.load_auth_key() is None
    for cfg in (SenderConfig(), ProxyConfig(), ReceiverConfig()):
        assert cfg.http.startswith("127.0.0.1:")
    assert load(SenderConfig, {"first_frame": 0, "auth_key_env": "K"}).first_frame == 0


def test_a_value_the_model_refuses_is_a_config_error_naming_it():
    from semnet.models.registry import build

    with pytest.raises(ConfigError, match="stride 12"):
        build("cnn", {"stride": 12})
    with pytest.raises(ConfigError, match="gain"):
        build("cnn-rd", {"gain": 99.0})
