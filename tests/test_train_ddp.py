"""Training under torchrun (issue 20): two CPU processes (gloo) write the checkpoint one process
writes for the same global batch, for a codec with a rate and for the diffusion imputer; the
processes' shares of the random draws make the single-process batch and their mean loss and
gradient are the batch's (with and without a rate); an uneven split and a model with batch
normalisation are refused. Tiny random models on generated photos
(never a library's sample images).

Tolerance: the two runs sum the same float32 terms in another order (per process, then
averaged), so tensors agree to ``ATOL`` after three Adam steps (measured: about 1.4e-6); the
random generators, which every process advances exactly as one process does, agree bitwise.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from semnet.errors import ConfigError, ModelError
from semnet.models import distributed, zoo
from semnet.models.cnn import CNNCodec
from semnet.models.config import (
    ImputerTrainSettings,
    TrainSettings,
    load_imputer_config,
    load_model_config,
)
from semnet.models.distributed import Share, World
from semnet.models.imputer import DiffusionImputer, dilate, f0_latent
from semnet.models.imputer_train import MaskSampler, shared_loss, train_imputer
from semnet.models.registry import build
from semnet.models.train import CropSampler, channel_erasure, folder_data, train, train_step

ATOL = RTOL = 1e-5
STEPS = 3


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three generated pictures (gradients with noise) in a folder."""
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:72, 0:96] / 80
    for seed in range(3):
        noise = np.random.default_rng(seed).normal(0, 20, (72, 96, 3))
        image = np.stack([x, y, 1 - x], axis=-1) * 200 + noise
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{seed}.png")
    return folder


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`semnet ARGS` in two processes on the CPU, as `torchrun --nproc_per_node 2` starts it."""
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCH_ENV}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "semnet", *args, "--threads", "1"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def assert_same_state(single: Path, parallel: Path, steps: int = STEPS) -> float:
    """The two runs' checkpoints agree; the largest difference of their tensors."""
    a = torch.load(single, weights_only=False)
    b = torch.load(parallel, weights_only=False)
    assert a["step"] == b["step"] == steps
    assert torch.equal(a["gen"], b["gen"])  # the same draws, in the same order
    assert a["model"].keys() == b["model"].keys()
    tensors = [(a["model"][k], b["model"][k]) for k in a["model"]]
    if "mean" in a:
        tensors.append((a["mean"], b["mean"]))
    for x, y in tensors:
        torch.testing.assert_close(y, x, atol=ATOL, rtol=RTOL)
    return max((x.float() - y.float()).abs().max().item() for x, y in tensors)


@pytest.mark.slow
def test_two_processes_write_the_checkpoint_one_process_writes(tmp_path, photos):
    """cnn-rd: the distortion and a rate normalised by the batch's pixels (a fixed-rate codec's
    loss is the distortion alone: test_the_shares_mean_gradient_is_the_batchs)."""
    config = tmp_path / "codec.yaml"
    config.write_text(
        "name: tiny-ddp\ncodec_id: 4000\narchitecture: cnn-rd\nparams: {hidden: 8, gain: 8.0}\n"
        "train: {batch: 4, crop: 32, scales: [48], checkpoint_every: 2, seed: 3}\n"
    )
    args = ["--config", str(config), "--data", str(photos), "--no-export", "--steps", str(STEPS)]
    done = torchrun("train", *args, "--run-dir", str(tmp_path / "ddp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count(f"step {STEPS} of {STEPS}") == 1  # rank 0 alone logs
    assert (tmp_path / "ddp" / "data_manifest.json").exists()
    cfg, files = load_model_config(config), folder_data(photos).files
    train(cfg, tmp_path / "one", STEPS, False, files)
    worst = assert_same_state(tmp_path / "one" / "state.pt", tmp_path / "ddp" / "state.pt")
    print(f"codec: largest difference {worst:.3g}")
    for run in ("one", "ddp"):  # what two processes wrote resumes in one
        train(cfg, tmp_path / run, STEPS + 1, False, files)
    assert_same_state(tmp_path / "one" / "state.pt", tmp_path / "ddp" / "state.pt", STEPS + 1)


@pytest.mark.slow
def test_two_processes_train_the_imputer_one_process_trains(tmp_path, photos):
    config = tmp_path / "imputer.yaml"
    config.write_text(
        "name: tiny-imputer-ddp\ncodec: cnn-c64\nwidth: 8\nkappa: 2\n"
        "train: {batch: 4, bank: 6, crop: 64, scales: [64], checkpoint_every: 2, seed: 2}\n"
    )
    args = ["--config", str(config), "--data", str(photos), "--no-export", "--steps", str(STEPS)]
    done = torchrun("train-imputer", *args, "--run-dir", str(tmp_path / "ddp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    cfg = load_imputer_config(config)
    files = folder_data(photos).files
    train_imputer(cfg, zoo.load(cfg.codec), tmp_path / "one", STEPS, False, files)
    worst = assert_same_state(tmp_path / "one" / "state.pt", tmp_path / "ddp" / "state.pt")
    print(f"imputer: largest difference {worst:.3g}")


@pytest.mark.slow
def test_an_uneven_split_is_one_line_from_every_process(tmp_path, photos):
    config = tmp_path / "codec.yaml"
    config.write_text(
        "name: tiny-ddp\ncodec_id: 4000\narchitecture: cnn\n"
        "params: {cbr: 0.0208333, hidden: 8, stride: 8}\n"
        "train: {batch: 3, crop: 32, scales: [48]}\n"
    )
    args = ["--config", str(config), "--data", str(photos), "--no-export", "--steps", "1"]
    done = torchrun("train", *args, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode != 0
    message = "train.batch 3 does not split evenly over 2 processes: make it a multiple of 2"
    assert done.stderr.count(message) == 2, done.stderr[-3000:]
    assert not (tmp_path / "run" / "state.pt").exists()


# -- the pieces, in one process -------------------------------------------------------------
def halves(n: int) -> list[Share]:
    return [distributed.share(n, World(rank, 2)) for rank in range(2)]


def test_the_shares_of_a_batch():
    assert distributed.share(8, World()) is None
    assert halves(8) == [Share(8, slice(0, 4)), Share(8, slice(4, 8))]
    with pytest.raises(ConfigError, match="train.batch 6 does not split evenly over 4 proc"):
        distributed.share(6, World(1, 4))


def test_the_shares_of_the_draws_make_the_single_process_batch(photos):
    files = folder_data(photos).files
    whole = CropSampler(files, (48,), 32, seed=4).batch(6)
    parts = [CropSampler(files, (48,), 32, seed=4).batch(6, h.rows) for h in halves(6)]
    assert torch.equal(torch.cat(parts), whole)

    s = TrainSettings(erasure_fraction=1.0)
    y = torch.ones(6, 5, 2, 2)
    erased = channel_erasure(y, s, torch.Generator().manual_seed(1))
    shares = [channel_erasure(y[h.rows], s, torch.Generator().manual_seed(1), h) for h in halves(6)]
    assert torch.equal(torch.cat(shares), erased) and not erased.all()


@pytest.mark.parametrize("architecture", ["cnn", "cnn-rd"])
def test_the_shares_mean_gradient_is_the_batchs(architecture):
    """What DDP averages: each share's loss and gradient; their mean is the whole batch's."""
    s = TrainSettings()
    params = {"cbr": 1 / 48, "hidden": 8, "stride": 8} if architecture == "cnn" else {"hidden": 8}
    torch.manual_seed(0)
    model = build(architecture, params)
    x = torch.rand(4, 3, 32, 32)

    def run(rows: slice, share: Share | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss, _, _ = train_step(model, x[rows], s, torch.Generator().manual_seed(2), share)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, grads = run(slice(None), None)
    parts = [run(h.rows, h) for h in halves(4)]
    torch.testing.assert_close((parts[0][0] + parts[1][0]) / 2, loss)
    for g, a, b in zip(grads, parts[0][1], parts[1][1], strict=True):
        torch.testing.assert_close((a + b) / 2, g, atol=1e-6, rtol=1e-4)


def test_the_imputers_shared_loss_is_its_loss():
    torch.manual_seed(0)
    codec = CNNCodec(cbr=1 / 48, hidden=8, bits=5, stride=8).eval()
    model = DiffusionImputer(codec.latent_channels, width=8)
    s = ImputerTrainSettings(partitions=("channel",))
    y0 = torch.randn(4, 4, 4, 4) * 0.3
    lost = MaskSampler((4, 4, 4), s, seed=1).draw(4)
    f0 = f0_latent(codec, 32, 32, "cpu")
    region = dilate(lost, model.kappa).float().sum().clamp(min=1.0).item()
    loss = model.loss(y0, lost, f0, torch.Generator().manual_seed(3))
    everything = Share(4, slice(0, 4))
    same = shared_loss(model, y0, lost, f0, torch.Generator().manual_seed(3), everything, region)
    assert torch.equal(same, loss)  # the same expression: keep shared_loss in step with loss
    parts = [
        shared_loss(
            model, y0[h.rows], lost[h.rows], f0, torch.Generator().manual_seed(3), h, region
        )
        for h in halves(4)
    ]
    torch.testing.assert_close((parts[0] + parts[1]) / 2, loss)


def test_without_torchrun_nothing_changes(monkeypatch):
    for name in distributed.LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    with distributed.session(torch.device("cpu")) as w:
        assert w == World() and w.main
        assert not torch.distributed.is_initialized()
    for name, value in zip(distributed.LAUNCH_ENV, ("0", "1", "0"), strict=True):
        monkeypatch.setenv(name, value)  # torchrun with one process: no group either
    with distributed.session(torch.device("cpu")) as w:
        assert w.size == 1 and not torch.distributed.is_initialized()
    model = nn.Linear(2, 1)
    step = distributed.parallel(model, lambda m, x: m(x).sum(), World())
    assert not isinstance(step, nn.Module) and step(torch.ones(1, 2)).shape == ()


def test_batch_normalisation_is_refused_across_processes():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ModelError, match=r"batch normalisation \(1\).*one process"):
        distributed.parallel(model, lambda m, x: m(x), World(0, 2))


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_write_the_checkpoint_one_gpu_writes(tmp_path, photos):
    config = tmp_path / "codec.yaml"
    config.write_text(
        "name: tiny-ddp\ncodec_id: 4000\narchitecture: cnn-rd\nparams: {hidden: 8, gain: 8.0}\n"
        "train: {batch: 4, crop: 32, scales: [48], checkpoint_every: 2, seed: 3}\n"
    )
    args = ["--config", str(config), "--data", str(photos), "--no-export", "--steps", str(STEPS)]
    args += ["--device", "cuda"]
    done = torchrun("train", *args, "--run-dir", str(tmp_path / "ddp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    files = folder_data(photos).files
    train(load_model_config(config), tmp_path / "one", STEPS, False, files, torch.device("cuda"))
    a = torch.load(tmp_path / "one" / "state.pt", weights_only=False, map_location="cpu")
    b = torch.load(tmp_path / "ddp" / "state.pt", weights_only=False, map_location="cpu")
    assert torch.equal(a["gen"], b["gen"])
    for k in a["model"]:  # GPU kernels reduce in an order of their own: a looser tolerance
        torch.testing.assert_close(b["model"][k].cpu(), a["model"][k].cpu(), atol=1e-4, rtol=1e-4)
