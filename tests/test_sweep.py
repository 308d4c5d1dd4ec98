"""Sweeps: the rows they write, their determinism, shared losses, checks before work, the
journal that keeps finished rows, and the sweep/plot commands."""

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from test_baselines import picture

from semnet.cli import demo as demo_cli
from semnet.cli import plot as plot_cli
from semnet.cli import sweep as sweep_cli
from semnet.cli.main import cli
from semnet.core.impair import Impairment
from semnet.errors import ConfigError, SemnetError
from semnet.experiments import sweep
from semnet.experiments.journal import Journal
from semnet.experiments.sweep import SweepSpec, impairment_seed, run_sweep
from semnet.models.cnn import CNNCodec

ROW_KEYS = {
    "codec",
    "partition",
    "fill",
    "loss_model",
    "loss",
    "image",
    "psnr_db",
    "ssim",
    "ms_ssim",
    "bpp",
    "interleave",
    "realised_loss",
    "datagrams_sent",
    "datagrams_received",
    "seed",
}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    codec = CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()
    return lambda name, threads: (codec, 1, {"name": name})


@pytest.fixture(scope="module")
def images():
    return {"astronaut": picture("astronaut"), "chelsea": picture("chelsea")}


SPEC = SweepSpec(
    codecs=("tiny", "jpeg", "jpeg2000+rs20"),
    partitions=("channel", "spatial"),
    losses=(0.0, 0.3),
    interleave=(True, False),
    datagram_size=200,
)


@pytest.fixture(scope="module")
def result(tiny, images):
    return run_sweep(images, SPEC, load=tiny)


def test_rows_cover_every_point_with_the_documented_columns(result):
    rows = result["rows"]
    semantic = [r for r in rows if r["codec"] == "tiny"]
    classical = [r for r in rows if r["codec"] != "tiny"]
    assert len(semantic) == 2 * 2 * 2 * 2  # partitions x interleave x losses x images
    assert len(classical) == 2 * 2 * 2  # codecs x losses x images
    assert all(set(r) >= ROW_KEYS for r in rows)
    assert {r["partition"] for r in semantic} == {"channel:1", "spatial:1x1"}
    assert {(r["partition"], r["fill"], r["interleave"]) for r in classical} == {("-", "-", None)}
    assert [r["codec"] for r in rows] == sorted((r["codec"] for r in rows), key=SPEC.codecs.index)
    for r in classical:
        assert r["bytes_sent"] <= r["target_bytes"] == result["target_bytes"][r["image"]]
    lossless = [r for r in rows if r["loss"] == 0]
    assert all(r["datagrams_received"] == r["datagrams_sent"] for r in lossless)
    assert any(r["realised_loss"] > 0 for r in rows if r["loss"] == 0.3)
    assert set(result["channel_means"]) == {"tiny"}
    assert len(result["channel_means"]["tiny"]["means"]) == 64
    assert {"command", "semnet_version", "date", "codecs", "axes"} <= set(result)


def test_same_seed_gives_identical_rows(tiny, images, result):
    again = run_sweep(images, SPEC, load=tiny)
    assert json.dumps(again["rows"]) == json.dumps(result["rows"])
    other = run_sweep(images, SweepSpec(**{**SPEC.__dict__, "seed": 2}), load=tiny)
    assert json.dumps(other["rows"]) != json.dumps(result["rows"])


def test_repeats_are_the_runs_of_successive_seeds(tiny, images, result):
    spec = SweepSpec(**{**SPEC.__dict__, "codecs": ("tiny", "jpeg"), "repeats": 2})
    rows = run_sweep(images, spec, load=tiny)["rows"]
    second = run_sweep(images, SweepSpec(**{**spec.__dict__, "seed": 2, "repeats": 1}), load=tiny)
    first = [r for r in result["rows"] if r["codec"] in spec.codecs]
    for codec in spec.codecs:
        want = [r for r in first + second["rows"] if r["codec"] == codec]
        got = [r for r in rows if r["codec"] == codec]
        key = lambda r: (r["seed"], r["partition"], r["interleave"], r["loss"], r["image"])  # noqa: E731
        assert json.dumps(sorted(got, key=key)) == json.dumps(sorted(want, key=key))


def test_repeats_must_be_positive():
    with pytest.raises(ConfigError, match="repeats"):
        SweepSpec(repeats=0)


def test_every_contender_draws_from_the_same_seeded_stream(tiny, images, monkeypatch):
    made: list[tuple[int, list[str]]] = []

    class Recording(Impairment):
        def __init__(self, spec, seed):
            super().__init__(spec, seed)
            self.actions: list[str] = []
            made.append((seed, self.actions))

        def process(self, data, now):
            out = super().process(data, now)
            self.actions.append(self.last_fate.action)
            return out

    monkeypatch.setattr(sweep, "Impairment", Recording)
    spec = SweepSpec(
        codecs=("tiny", "jpeg", "webp+rs20"),
        loss_models=("bernoulli", "ge"),
        losses=(0.2, 0.4),
        burst_length=3,
        interleave=(True, False),
        datagram_size=200,
    )
    run_sweep(images, spec, load=tiny)
    expected = {
        impairment_seed(spec.seed, image, model, rate): (image, model, rate)
        for image in images
        for model, rate in spec.loss_points()
    }
    assert {seed for seed, _ in made} == set(expected)
    contenders = 2 + 2  # tiny with interleaving on and off, jpeg, webp+rs20
    for seed in expected:
        runs = [actions for s, actions in made if s == seed]
        assert len(runs) == contenders
        shortest = min(len(a) for a in runs)
        assert len({tuple(a[:shortest]) for a in runs}) == 1
    assert any(action == "drop:loss" for _, actions in made for action in actions)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss_models": ("ge",)}, "burst length"),
        ({"burst_length": 3.0}, "burst length"),
        ({"loss_models": ("ge",), "burst_length": 2.0, "losses": (0.9,)}, "unreachable"),
        ({"loss_models": ("gilbert",)}, "loss model"),
        ({"codecs": ("jpeg+rs0",)}, "FEC suffix"),
        ({"codecs": ("cnn-c64+rs20",)}, "classical codecs only"),
        ({"partitions": ("diagonal",)}, "unknown scheme"),
        ({"fills": ("median",)}, "fill"),
        ({"losses": (1.5,)}, "0..1"),
        ({"losses": (0.1, 0.1)}, "repeats"),
        ({"datagram_size": 60}, "datagram size"),
    ],
)
def test_bad_axes_are_refused_before_any_work(changes, message):
    with pytest.raises(ConfigError, match=message):
        SweepSpec(**{**SPEC.__dict__, **changes})


def test_online_refuses_classical_codecs(tiny, images, tmp_path):
    with pytest.raises(ConfigError, match="--online"):
        run_sweep(images, SPEC, load=tiny, online=tmp_path)


@pytest.fixture(scope="module")
def runner():
    for command in (*sweep_cli.COMMANDS, *plot_cli.COMMANDS):
        cli.add_command(command)
    return CliRunner()


def test_sweep_and_plot_commands_end_to_end(runner, folder, tmp_path):
    out = tmp_path / "results.json"
    args = ["sweep", "--images", str(folder), "--codec", "cnn-c64,jpeg+rs20", "--loss", "0,0.1"]
    result = runner.invoke(cli, [*args, "--datagram-size", "300", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("semnet sweep --codec cnn-c64,jpeg+rs20")
    assert len(data["rows"]) == 2 * 2 * 2  # codecs x losses x images
    assert "jpeg+rs20" in result.stdout
    header, *journal = map(json.loads, out.with_suffix(".jsonl").read_text().splitlines())
    assert journal == data["rows"] and header["axes"] == data["axes"]
    plots = tmp_path / "plots"
    result = runner.invoke(cli, ["plot", str(out), "--out", str(plots)])
    assert result.exit_code == 0, result.output
    names = ["psnr_vs_loss", "ssim_vs_loss", "delta_psnr", "channel_means"]
    for name in names:
        path = plots / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            im.verify()
    assert "no MS-SSIM plot" in result.stderr  # 96 x 128 photos: too small for 5 scales
    result = runner.invoke(cli, ["plot", str(out), "--out", str(plots), "--delta-loss", "0.3"])
    assert result.exit_code == 0, result.output
    assert "no ΔPSNR plot at loss 0.3: pick one the sweep has with --delta-loss (0.1)" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "--loss", "0,x"],
        ["sweep", "--loss-model", "ge"],
        ["sweep", "--interleave", "maybe"],
        ["sweep", "--codec", "jpeg+rs0"],
        ["sweep", "--codec", "cnn-nosuch"],
        ["sweep", "--partition", "diagonal"],
        ["sweep", "--seed", "abc"],
        ["sweep", "--codec", "jpeg", "--online"],
        ["sweep", "--images", "eval:nosuch"],
        ["plot", "absent.json"],
    ],
)
def test_bad_flags_give_one_line_and_exit_2(runner, args, tmp_path):
    result = runner.invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("semnet: error: ") and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_online_sees_the_losses_offline_sees(images, tmp_path):
    """Through real daemons, the proxy seeded per image drops the datagrams offline drops."""
    spec = SweepSpec(codecs=("cnn-c64",), losses=(0.0, 0.3), datagram_size=300)
    offline = run_sweep(images, spec)["rows"]
    online = run_sweep(images, spec, online=tmp_path)["rows"]
    assert len(online) == len(offline) == 4
    for a, b in zip(online, offline, strict=True):
        assert (a["image"], a["loss"]) == (b["image"], b["loss"])
        assert a["datagrams_sent"] == b["datagrams_sent"]
        assert a["datagrams_received"] == b["datagrams_received"]
        if a["loss"] == 0:
            assert a["psnr_db"] == pytest.approx(b["psnr_db"], abs=0.05)


def test_fills_steps_and_perceptual_scores_sweep_and_plot(runner, folder, tmp_path):
    from semnet.pipeline.frames import perceptual_available

    if not perceptual_available():
        pytest.skip("needs the optional metrics (make metrics-extra)")
    out = tmp_path / "fills.json"
    fills = "zero,f0,diffusion:1,diffusion:2"
    args = ["sweep", "--images", str(folder), "--fill", fills, "--loss", "0.3", "--perceptual"]
    result = runner.invoke(cli, [*args, "--partition", "patch:4x4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert {r["fill"] for r in rows} == set(fills.split(","))
    assert all(r["lpips"] >= 0 and isinstance(r["semantic_agree"], bool) for r in rows)
    assert "LPIPS" in result.stdout and "diffusion:2" in result.stdout
    by_fill = {f: [r["psnr_db"] for r in rows if r["fill"] == f] for f in fills.split(",")}
    assert by_fill["diffusion:1"] != by_fill["zero"]  # the imputer changed what was decoded
    plots = tmp_path / "plots"
    result = runner.invoke(cli, ["plot", str(out), "--out", str(plots)])
    assert result.exit_code == 0, result.output
    for name in ["lpips_vs_loss", "semantic_vs_loss", "quality_vs_steps"]:
        with Image.open(plots / f"{name}.png") as im:
            im.verify()


def test_plots_keep_every_loss_draw_of_an_image():
    rows = [
        {"codec": "c", "partition": "channel:1", "fill": "zero", "interleave": True,
         "loss_model": "bernoulli", "loss": 0.1, "image": "a", "seed": s, "psnr_db": v}
        for s, v in ((1, 20.0), (2, 24.0))
    ]  # fmt: skip
    table = plot_cli.by_contender(rows, "bernoulli")
    (per_loss,) = table.values()
    assert plot_cli.image_mean(per_loss[0.1], "a", "psnr_db") == 22.0


def test_ms_ssim_in_rows_where_the_image_has_room_for_five_scales(tiny, images):
    big = {"big": np.ascontiguousarray(np.tile(picture("coffee"), (2, 2, 1))[:176, :176])}
    spec = SweepSpec(codecs=("tiny", "jpeg"), losses=(0.0,), datagram_size=200)
    rows = run_sweep({**images, **big}, spec, load=tiny)["rows"]
    assert all(0 < r["ms_ssim"] <= 1 for r in rows if r["image"] == "big")
    assert all(r["ms_ssim"] is None for r in rows if r["image"] != "big")
    assert "MS-SSIM" in sweep_cli.summary(rows)


def test_a_fill_without_its_model_fails_before_any_cell(tiny, images, tmp_path, monkeypatch):
    measured = []
    monkeypatch.setattr(sweep, "transmit", lambda *a, **k: measured.append(a))
    spec = SweepSpec(codecs=("tiny",), fills=("zero", "diffusion"), datagram_size=200)
    journal = Journal(tmp_path / "rows.jsonl")
    with pytest.raises(ConfigError, match="fill 'diffusion' with codec 'tiny'"):
        run_sweep(images, spec, load=tiny, journal=journal)
    assert measured == [] and not journal.path.exists()


def test_sweep_command_names_a_missing_imputer_before_any_work(runner, tmp_path):
    """The reported case: zero-fill cells ran for hours, then diffusion found no imputer."""
    out = tmp_path / "out.json"
    args = ["sweep", "--codec", "cnn-c64-tuned", "--fill", "zero,diffusion", "--out", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "fill 'diffusion' with codec 'cnn-c64-tuned'" in result.stderr
    assert not out.with_suffix(".jsonl").exists()


class Failing:
    """``transmit`` that raises ``exc`` after ``n`` frames: a sweep that goes wrong late
    (a SemnetError fails the cells it hits; a KeyboardInterrupt stops the sweep)."""

    def __init__(self, n: int, exc: BaseException | None = None) -> None:
        self.n, self.calls = n, 0
        self.exc = exc or SemnetError("the machine went away")

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.n:
            raise self.exc
        return TRANSMIT(*args, **kwargs)


TRANSMIT = sweep.transmit
RESUMABLE = SweepSpec(codecs=("tiny",), partitions=("channel", "spatial"), datagram_size=200)


def journal_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_an_interrupted_sweep_keeps_its_rows_and_resume_measures_the_rest(
    tiny, images, tmp_path, monkeypatch
):
    whole = run_sweep(images, RESUMABLE, load=tiny)["rows"]
    assert {r["status"] for r in whole} == {"ok"} and all(r["error"] is None for r in whole)
    path = tmp_path / "rows.jsonl"
    monkeypatch.setattr(sweep, "transmit", Failing(5, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(images, RESUMABLE, load=tiny, journal=Journal(path))
    assert len(path.read_text().splitlines()) == 1 + 5
    with path.open("a") as f:
        f.write('{"codec": "tiny", "cut by a ki')  # a row half written when the process died
    again = Failing(len(whole))
    monkeypatch.setattr(sweep, "transmit", again)
    journal = Journal(path)
    rows = run_sweep(images, RESUMABLE, load=tiny, journal=journal, resume=True)["rows"]
    assert again.calls == len(whole) - 5
    assert json.dumps(rows) == json.dumps(whole)
    assert journal.rows == len(whole)
    assert journal_rows(path) == whole


def test_a_failing_cell_is_recorded_the_others_go_on_and_resume_measures_it_again(
    tiny, images, tmp_path, monkeypatch
):
    whole = run_sweep(images, RESUMABLE, load=tiny, journal=Journal(tmp_path / "whole.jsonl"))
    path = tmp_path / "rows.jsonl"
    monkeypatch.setattr(sweep, "transmit", Failing(5))
    result = run_sweep(images, RESUMABLE, load=tiny, journal=Journal(path))
    n = len(whole["rows"])
    assert result["cells"] == {"ok": 5, "retried": 0, "failed": n - 5}
    assert result["rows"] == whole["rows"][:5]
    for failed, good in zip(result["failed"], whole["rows"][5:], strict=True):
        assert failed["status"] == "failed" and failed["error"] == "the machine went away"
        assert sweep.row_key(failed) == sweep.row_key(good)
        assert failed["psnr_db"] is None and failed["decoded"] is None
        assert set(failed) == set(good)
    assert journal_rows(path) == result["rows"] + result["failed"]  # every cell's status
    again = Failing(n)
    monkeypatch.setattr(sweep, "transmit", again)
    rows = run_sweep(images, RESUMABLE, load=tiny, journal=Journal(path), resume=True)
    assert again.calls == n - 5  # the failed cells, and only they
    assert rows["rows"] == whole["rows"] and rows["failed"] == []
    assert path.read_text() == (tmp_path / "whole.jsonl").read_text()


def test_resume_refuses_the_journal_of_another_sweep(tiny, images, tmp_path):
    path = tmp_path / "rows.jsonl"
    run_sweep(images, RESUMABLE, load=tiny, journal=Journal(path))
    other = SweepSpec(**{**RESUMABLE.__dict__, "losses": (0.0, 0.2)})
    with pytest.raises(ConfigError, match=r"holds another sweep \(axes.losses differ\)"):
        run_sweep(images, other, load=tiny, journal=Journal(path), resume=True)
    with pytest.raises(ConfigError, match=r"holds another sweep \(threads differ\)"):
        run_sweep(images, RESUMABLE, load=tiny, journal=Journal(path), resume=True, threads=1)
    with pytest.raises(ConfigError, match="--resume: offline sweeps only"):
        run_sweep(images, RESUMABLE, load=tiny, online=tmp_path, resume=True)


def test_sweep_command_says_where_the_rows_are_kept_when_it_dies(
    runner, folder, tmp_path, monkeypatch
):
    out = tmp_path / "results.json"
    args = ["sweep", "--images", str(folder), "--codec", "cnn-c64", "--loss", "0,0.1"]
    args += ["--datagram-size", "300", "--out", str(out)]
    monkeypatch.setattr(sweep, "transmit", Failing(3, KeyboardInterrupt()))
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    journal = out.with_suffix(".jsonl")
    assert f"interrupted (3 rows kept in {journal}; --resume continues)" in result.stderr
    monkeypatch.setattr(sweep, "transmit", Failing(0))  # every cell fails
    result = runner.invoke(cli, [*args, "--resume"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 2  # rows written, then the one-line error
    assert f"1 of 4 cells failed, marked in {journal} and {out}" in result.stderr
    assert "seed 1: the machine went away); --resume measures them again" in result.stderr
    assert json.loads(out.read_text())["cells"] == {"ok": 3, "retried": 0, "failed": 1}
    monkeypatch.setattr(sweep, "transmit", TRANSMIT)
    result = runner.invoke(cli, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["rows"]) == 4


@pytest.mark.parametrize("command", [sweep_cli.sweep, demo_cli.demo])
def test_repeats_is_spelled_one_way_and_the_old_spelling_still_parses(command):
    ctx = command.make_context(command.name, ["--repeat", "3"])
    assert ctx.params["repeats"] == 3
    text = command.get_help(ctx)
    assert "--repeats" in text and not re.search(r"--repeat\b", text)


def test_sweep_takes_a_manifest_path_and_a_zoo(runner, folder, tmp_path, monkeypatch):
    """--codec path/x.json stands for the codec it holds; --zoo puts a zoo first."""
    from semnet.models import zoo

    monkeypatch.delenv("SEMNET_ZOO", raising=False)
    manifest = zoo.ZOO_DIR / "cnn-c64.json"
    out = tmp_path / "zoo.json"
    args = ["sweep", "--images", str(folder), "--codec", str(manifest), "--loss", "0"]
    args += ["--zoo", str(zoo.ZOO_DIR), "--datagram-size", "300", "--out", str(out)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert {row["codec"] for row in json.loads(out.read_text())["rows"]} == {"cnn-c64"}
    missing = runner.invoke(cli, ["sweep", "--zoo", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 2 and "nowhere" in missing.output
