"""The bit interface (paper 003, issue 18): the pure core (interface files, importance classes,
the access node's allocation, bit flips, packet UEP), the BSC codec and its trainer, and
`semnet zoo show --interface`."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from semnet.baselines import fec
from semnet.core import interface as itf
from semnet.errors import ConfigError


def _iface(seed: int = 0, channels: int = 6, bits: int = 4) -> itf.Interface:
    rng = np.random.default_rng(seed)
    return itf.Interface(rng.uniform(0.0, 0.5, (channels, bits)))


# --- interface files ----------------------------------------------------------------------


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "iface.json"
    p.write_text(json.dumps(data))
    return p


def test_interface_round_trip(tmp_path):
    iface = _iface()
    path = tmp_path / "i.json"
    iface.save(path)
    back = itf.load(path, channels=6, bits=4)
    np.testing.assert_allclose(back.eps, iface.eps, atol=1e-6)
    np.testing.assert_allclose(back.importance, 1 - 2 * back.eps)
    flat = {"channels": 2, "bits": 2, "eps": [0.0, 0.1, 0.2, 0.5]}
    assert itf.from_dict(flat).eps.tolist() == [[0.0, 0.1], [0.2, 0.5]]


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"channels": 2, "bits": 2, "eps": [0.1, 0.1, 0.1]}, "3 values, expected 4"),
        ({"channels": 2, "bits": 2, "eps": [[0.1, 0.1], [0.1, 0.1], [0.1, 0.1]]}, "expected 4"),
        ({"channels": 2, "bits": 2, "eps": [0.1, 0.6, 0.1, 0.1]}, "eps[0][1] = 0.6 is outside"),
        ({"channels": 2, "bits": 2, "eps": [0.1, 0.1, -0.01, 0.1]}, "eps[1][0] = -0.01"),
        ({"channels": 1, "bits": 2, "eps": [0.1, float("nan")]}, "eps[0][1] is not finite"),
        ({"channels": 1, "bits": 2, "eps": [0.1, float("inf")]}, "not finite"),
        ({"channels": 1, "bits": 2, "eps": ["a", 0.1]}, "must be numbers"),
        ({"channels": 1, "bits": 2}, "eps missing"),
        ({"channels": "1", "bits": 2, "eps": [0.1, 0.1]}, "channels must be an integer"),
        ({"channels": 1, "bits": 2, "eps": [0.1, 0.1], "extra": 1}, "unknown key 'extra'"),
        ({"format": "x/9", "channels": 1, "bits": 1, "eps": [0.1]}, "format"),
        ([0.1, 0.2], "not a JSON object"),
    ],
)
def test_bad_interface_refused_with_reason(tmp_path, data, reason):
    with pytest.raises(ConfigError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        itf.load(_write(tmp_path, data))


def test_interface_must_fit_the_codec(tmp_path):
    path = _write(tmp_path, {"channels": 2, "bits": 2, "eps": [0.1] * 4})
    with pytest.raises(ConfigError, match="bits is 2, the codec has 4"):
        itf.load(path, channels=2, bits=4)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        itf.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="outside"):
        itf.Interface(np.full((2, 2), 0.7))


def test_group_orders_classes_by_importance():
    iface = _iface(3, channels=5, bits=3)
    cls = itf.group(iface, 4)
    assert cls.sizes.sum() == 15 and cls.sizes.max() - cls.sizes.min() <= 1
    assert np.all(np.diff(cls.eps) >= 0)  # class 0 the most important
    for k in range(3):  # every member of a class is at least as important as the next class's
        assert iface.eps[cls.labels == k].max() <= iface.eps[cls.labels == k + 1].min()
    with pytest.raises(ConfigError):
        itf.group(iface, 16)


# --- the access node's allocation ---------------------------------------------------------

CASES = [
    (seed, ch, scheme)
    for seed in range(4)
    for ch in ("awgn", "rayleigh")
    for scheme in ("match", "weighted")
]


@pytest.mark.parametrize("seed, channel, scheme", CASES)
def test_allocation_properties(seed, channel, scheme):
    iface = _iface(seed)
    budget = itf.Budget(power=1.0)
    previous = None
    for snr in (0.0, 2.5, 5.0, 10.0, 15.0, 20.0):
        a = itf.allocate(iface, snr, channel, budget, classes=4, scheme=scheme)
        f = a.classes.sizes / a.classes.sizes.sum()
        assert np.sum(f * a.powers) == pytest.approx(budget.power, rel=1e-9)  # budget kept
        assert np.all(a.powers >= 0)
        assert np.all((a.probs >= 0) & (a.probs <= 0.5 + 1e-12))
        # a more important class never gets a higher flip probability
        assert np.all(np.diff(a.probs) >= -1e-12), a.probs
        if previous is not None:  # more SNR never raises a class's flip probability
            assert np.all(a.probs <= previous + 1e-12), (snr, a.probs, previous)
        previous = a.probs


def test_allocation_equal_and_uninformative_interfaces():
    iface = _iface(1)
    eq = itf.allocate(iface, 10.0, "awgn", scheme="equal")
    assert np.allclose(eq.powers, 1.0)
    assert np.allclose(eq.probs, itf.flip_probability(10.0, 1.0))
    flat = itf.Interface(np.zeros((4, 4)))  # no interface: every bit alike, equal power
    assert np.allclose(itf.allocate(flat, 5.0, "rayleigh").powers, 1.0)
    # QPSK over AWGN at unit power: Q(sqrt(snr)); BPSK: Q(sqrt(2 snr))
    assert eq.probs[0] == pytest.approx(float(itf.q_function(np.sqrt(10.0))))
    bpsk = itf.allocate(iface, 10.0, budget=itf.Budget(modulation="bpsk"), scheme="equal")
    assert bpsk.probs[0] == pytest.approx(float(itf.q_function(np.sqrt(20.0))))


def test_match_realises_the_interface_shape():
    iface = itf.Interface(np.tile([0.001, 0.01, 0.05, 0.2], (4, 1)))
    a = itf.allocate(iface, 12.0, "awgn", scheme="match")
    ratio = a.probs / a.classes.eps
    assert np.allclose(ratio, ratio[0], rtol=1e-4)  # flips are t * eps: the interface's shape


def test_rayleigh_average_matches_realised_gains():
    iface = _iface(2)
    a = itf.allocate(iface, 10.0, "rayleigh", scheme="match")
    gains = np.random.default_rng(0).standard_exponential(200_000)
    mc = a.realised(gains[:, None]).mean(axis=0)
    np.testing.assert_allclose(mc, a.probs, rtol=0.03, atol=1e-4)


def test_allocation_refuses_bad_input():
    iface = _iface()
    with pytest.raises(ConfigError, match="channel"):
        itf.allocate(iface, 10.0, "fibre")
    with pytest.raises(ConfigError, match="scheme"):
        itf.allocate(iface, 10.0, scheme="best")
    with pytest.raises(ConfigError, match="power"):
        itf.Budget(power=0.0)
    with pytest.raises(ConfigError, match="channel uses"):
        itf.allocate(iface, 10.0, budget=itf.Budget(channel_uses=10), bits_per_entry=100)


# --- flipping bits ------------------------------------------------------------------------


def test_flip_bits_statistics_and_seed():
    bits = [np.zeros(200_000, np.uint8), np.ones(200_000, np.uint8), np.zeros(1000, np.uint8)]
    probs = [0.1, 0.01, 0.0]
    out = itf.flip_bits(bits, probs, np.random.default_rng(7))
    assert abs(out[0].mean() - 0.1) < 0.003
    assert abs((1 - out[1]).mean() - 0.01) < 0.001
    assert not out[2].any()
    assert bits[0].sum() == 0  # inputs untouched
    again = itf.flip_bits(bits, probs, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))
    per_bit = itf.flip_bits(
        [np.zeros(4, np.uint8)], [np.array([0, 1, 0, 1.0])], np.random.default_rng(1)
    )
    assert per_bit[0].tolist() == [0, 1, 0, 1]
    with pytest.raises(ConfigError):
        itf.flip_bits(bits, [0.1], np.random.default_rng(0))
    with pytest.raises(ConfigError):
        itf.flip_bits([bits[0]], [1.5], np.random.default_rng(0))


def test_flip_packed():
    data = bytes(10_000)
    out = itf.flip_packed(data, 0.05, np.random.default_rng(3))
    ones = np.unpackbits(np.frombuffer(out, np.uint8)).mean()
    assert len(out) == len(data) and abs(ones - 0.05) < 0.005
    assert itf.flip_packed(data, 0.0, np.random.default_rng(3)) == data


# --- packet-level unequal protection ------------------------------------------------------


def test_expected_lost_against_monte_carlo():
    assert itf.expected_lost(10, 0, 0.2) == pytest.approx(2.0)
    assert itf.expected_lost(10, 4, 0.0) == 0.0
    rng = np.random.default_rng(0)
    k, m, p = 8, 3, 0.25
    lost = rng.random((100_000, k + m)) < p
    fail = lost.sum(axis=1) > m
    mc = np.mean(np.where(fail, lost[:, :k].sum(axis=1), 0))
    assert itf.expected_lost(k, m, p) == pytest.approx(mc, rel=0.02)


def test_overhead_percent_gives_exact_parity():
    for k in (1, 7, 32, 100):
        for m in range(0, 2 * k + 1):
            if -(-k * 255 // 100) >= m:
                assert fec.parity(k, itf.overhead_percent(k, m)) == m


def test_uep_plan_spends_the_same_bytes_as_equal_protection():
    from semnet.experiments.interface import (
        Encoded,
        equal_protection,
        send_protected,
        unequal_protection,
    )

    iface = itf.Interface(np.tile([0.0005, 0.01, 0.1, 0.3], (8, 1)))
    classes = itf.group(iface, 4)
    rng = np.random.default_rng(0)
    enc = Encoded(rng.integers(0, 2, (8, 4, 6, 5), dtype=np.uint8), 96, 80, 30.0)
    for loss in (0.0, 0.1, 0.2, 0.3):
        eq = equal_protection(4, 32, 25)
        un = unequal_protection(classes, 32, 25, loss)
        assert sum(un.m) == sum(eq.m) and un.shares == eq.shares
        assert un.m[0] >= un.m[-1]  # the most important class gets at least as much parity
        _, sent_eq, _ = send_protected(enc, classes, eq, loss, np.random.default_rng(1))
        planes, sent_un, erased = send_protected(enc, classes, un, loss, np.random.default_rng(1))
        assert sent_eq == sent_un
        if loss == 0.0:
            assert erased == 0.0 and np.array_equal(planes, enc.planes)


# --- the codec and its trainer ------------------------------------------------------------


def _tiny(**kw):
    from semnet.models.registry import build

    params = {"channels": 4, "bits": 3, "hidden": 16, **kw}
    return build("bsc", params)


def test_bsc_layer_gradients_and_eps_bounds():
    torch.manual_seed(0)
    model = _tiny()
    x = torch.rand(2, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam([model.eps_logit], lr=2.0)  # large steps push eps to its ends
    for step in range(5):
        x_hat = model.through_bsc(model.encode(x), gen)
        loss = torch.mean((x_hat - x) ** 2) + model.regulariser(10.0)
        opt.zero_grad()
        loss.backward()
        grad = model.eps_logit.grad
        assert grad is not None and torch.all(torch.isfinite(grad)) and grad.abs().sum() > 0
        if step == 0:  # the quantizer's STE reaches the encoder
            assert model.encoder[0].weight.grad.abs().sum() > 0
        opt.step()
        eps = model.eps()
        assert torch.all((eps >= 0) & (eps <= 0.5))
    assert model.interface().shape == (4, 3)


def test_bsc_bits_and_fixed_interface():
    model = _tiny(interface="fixed", eps=[0.0, 0.1, 0.5])
    assert model.interface()[2].tolist() == pytest.approx([0.0, 0.1, 0.5])
    assert model.regulariser(1.0) == 0
    y = torch.rand(1, 4, 2, 2) * 2 - 1
    index = model.to_index(y)
    planes = model.bitplanes(index)
    assert planes.shape == (1, 4, 3, 2, 2)
    assert torch.allclose(model.value(planes), index / 7 * 2 - 1)
    zero = _tiny(interface="fixed", eps=[0.0, 0.0, 0.0])  # eps 0: the demapper sees clean bits
    y = zero.encode(torch.rand(1, 3, 32, 32))
    noisy = zero.through_bsc(y, torch.Generator().manual_seed(0))
    assert torch.allclose(noisy, zero.synthesize(y), atol=1e-5)
    with pytest.raises(ConfigError, match=r"\[0, 0.5\]"):
        _tiny(interface="fixed", eps=[0.1, 0.7, 0.1])
    with pytest.raises(ConfigError, match="needs eps"):
        _tiny(interface="fixed")


def test_packet_curve_goes_through_the_access_node():
    from semnet.experiments.interface import Scheme, packet_curve

    model = _tiny(interface="fixed", eps=[0.001, 0.01, 0.1]).eval()
    iface = itf.Interface(model.interface())
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    curve = packet_curve([Scheme("tiny", model, iface)], {"noise": image}, (0.0, 30.0), ("awgn",))
    rows = curve["tiny"]["awgn"]
    assert rows["0"]["class_flip_rate"][0] < rows["0"]["class_flip_rate"][2]  # MSB protected
    assert rows["30"]["class_flip_rate"] == [0.0, 0.0, 0.0]
    assert all(np.isfinite(r["psnr_db"]) for r in rows.values())  # untrained: no ordering


def test_trainer_runs_two_steps(tmp_path):
    from semnet.models.bsc_train import InterfaceConfig, InterfaceTrainSettings, train

    rng = np.random.default_rng(0)
    photo = tmp_path / "p.png"
    Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(photo)
    cfg = InterfaceConfig(
        name="bsc-test",
        codec_id=40001,
        architecture="bsc",
        params={"channels": 4, "bits": 3, "hidden": 16},
        train=InterfaceTrainSettings(steps=2, batch=2, crop=32, scales=(64,), lam=0.05),
    )
    before = _tiny().eps().detach().clone()
    model = train(cfg, tmp_path / "run", [str(photo)], progress=False)
    assert (tmp_path / "run" / "state.pt").exists()
    assert not torch.equal(model.eps(), before)  # the interface learned
    assert torch.all((model.eps() >= 0) & (model.eps() <= 0.5))


def test_config_refuses_bad_params(tmp_path):
    from semnet.models.bsc_train import load_interface_config

    p = tmp_path / "c.yaml"
    p.write_text("name: x\ncodec_id: 40001\narchitecture: bsc\nparams: {interface: oracle}\n")
    with pytest.raises(ConfigError, match="interface"):
        load_interface_config(p)
    p.write_text("name: x\ncodec_id: 40001\narchitecture: cnn\n")
    with pytest.raises(ConfigError, match="architecture"):
        load_interface_config(p)


# --- `semnet zoo show --interface` --------------------------------------------------------


def _cli(*args: str):
    from semnet.cli.main import cli
    from semnet.cli.zoo_commands import zoo

    cli.add_command(zoo)
    return CliRunner().invoke(cli, list(args))


def test_zoo_show_interface_on_a_fresh_entry(tmp_path, monkeypatch):
    from semnet.models import zoo

    model = _tiny()
    with torch.no_grad():
        model.eps_logit.copy_(torch.linspace(-6, 0, 12).view(4, 3))
    iface = itf.Interface(model.interface())
    entry = zoo.ZooEntry(
        name="bsc-show-test",
        codec_id=40002,
        architecture="bsc",
        params={"channels": 4, "bits": 3, "hidden": 16},
        file="",
        sha256="",
        dtype="",
        command="test",
        config={},
        data_manifest_sha256="",
        steps=0,
        metrics={"interface": {**iface.as_dict(), "kind": "learned"}},
    )
    monkeypatch.setenv("SEMNET_ZOO", str(tmp_path))
    zoo.refresh()
    try:
        zoo.export(model, entry, torch.float32, directory=tmp_path)
        r = _cli("zoo", "show", "bsc-show-test", "--interface", "--json")
        assert r.exit_code == 0, r.output
        shown = json.loads(r.output)
        np.testing.assert_allclose(shown["eps"], iface.eps, atol=1e-6)
        np.testing.assert_allclose(shown["importance"], 1 - 2 * iface.eps, atol=1e-5)
        r = _cli("zoo", "show", "bsc-show-test", "--interface")
        assert r.exit_code == 0 and "eps by bit" in r.output and "learned interface" in r.output
        r = _cli("zoo", "show", "cnn-c64", "--interface")
        assert r.exit_code == 2 and "ships no interface" in r.output
    finally:
        monkeypatch.delenv("SEMNET_ZOO")
        zoo.refresh()


@pytest.mark.parametrize("name", ["bsc-learned", "bsc-prescribed"])
def test_zoo_show_prints_the_shipped_interface(name):
    from semnet.models import zoo

    if name not in zoo.catalog().by_name:
        pytest.skip(f"{name} not shipped")
    manifest = asdict(zoo.entry(name))
    iface = itf.from_manifest(manifest)
    r = _cli("zoo", "show", name, "--interface", "--json")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(json.loads(r.output)["eps"], iface.eps, atol=1e-6)
    model = zoo.load(name)  # the weights' eps are the manifest's (fp16 rounding)
    np.testing.assert_allclose(model.interface(), iface.eps, atol=2e-3)
    if name == "bsc-prescribed":
        assert iface.by_bit().tolist() == pytest.approx([0.001, 0.01, 0.03, 0.1], rel=1e-3)
