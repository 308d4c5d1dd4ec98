"""Training on several processes: what `semnet train` and `semnet train-imputer` need to run
under torchrun, in one place for both trainers.

torchrun starts one process per GPU (or per share of the CPU cores) and tells each its place in
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`session` makes a process group of them (gloo
on the CPU, nccl on CUDA, one GPU per process) and destroys it at exit, also on error; started
any other way, or with one process, it does nothing and training runs exactly as it always has.

The global batch stays the config's ``batch``. Every process draws the random numbers one
process would draw for the whole batch (crops, noise, erasures, masks, timesteps) and keeps its
:class:`Share` of the rows, so the processes' rows together are the single-process batch and
every generator stays in step. The model is wrapped in DistributedDataParallel (:func:`parallel`),
which averages the processes' gradients: with mean-reduced losses over equal shares that is the
gradient of the whole batch's loss. A loss normalised otherwise (the imputer's, by the size of
the loss region) is rescaled by its trainer.

Only the main process (rank 0) writes checkpoints, logs progress and publishes to the zoo; the
others wait at a :func:`barrier`. The run folder must be the same folder for every process (one
machine, or a shared file system), as a resumed run reads its state there.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import torch
from torch import distributed as dist
from torch import nn

from semnet.errors import ConfigError, ModelError, SemnetError

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # what torchrun sets for each process
# How long the other processes wait for rank 0 to export and measure the trained model: far
# longer than a training step's collectives may take (their timeout is torch's default).
PUBLISH_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # the group the others wait for rank 0 in at the end (gloo, PUBLISH_TIMEOUT), if any
    publish_group: object | None = field(default=None, compare=False, repr=False)

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints, logs progress and publishes."""
        return self.rank == 0


@dataclass(frozen=True)
class Share:
    """This process's rows of a global batch of ``total`` samples."""

    total: int
    rows: slice

    def whole(self, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        """``shape`` (this process's rows first) with the whole batch's rows instead."""
        return (self.total, *shape[1:])

    def mine(self, whole: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor for the whole batch."""
        return whole[self.rows]


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return all(name in os.environ for name in LAUNCH_ENV)


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise SemnetError(
            f"${name}={os.environ[name]!r} is not an integer (set by torchrun)"
        ) from None


@contextmanager
def session(device: torch.device) -> Iterator[World]:
    """The process group of a torchrun launch for training on ``device`` (its type picks the
    backend: nccl for CUDA, where each process takes GPU ``LOCAL_RANK``, else gloo), destroyed
    when the block ends, also on error. Without torchrun, with one process, or inside a group
    someone else made, it makes none and destroys none."""
    if dist.is_available() and dist.is_initialized():
        yield world(device)
        return
    if not launched() or _env_int("WORLD_SIZE") == 1:
        yield World(device=device)
        return
    if not dist.is_available():
        raise SemnetError("started by torchrun, but this torch build has no torch.distributed")
    rank, size, local = (_env_int(name) for name in LAUNCH_ENV)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise SemnetError(
                f"process {rank} of {size} wants GPU {local} ($LOCAL_RANK), but there are "
                f"{torch.cuda.device_count()}: start at most one process per GPU"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=size, device_id=device)
    else:
        dist.init_process_group("gloo", rank=rank, world_size=size)
    try:
        publish = dist.new_group(backend="gloo", timeout=PUBLISH_TIMEOUT)
        yield World(rank, size, device, publish)
    finally:
        dist.destroy_process_group()


def world(device: torch.device | None = None) -> World:
    """This process's place in the process group there is (none: rank 0 of 1)."""
    device = device or torch.device("cpu")
    if not (dist.is_available() and dist.is_initialized()):
        return World(device=device)
    return World(dist.get_rank(), dist.get_world_size(), device)


def share(batch: int, w: World) -> Share | None:
    """This process's equal share of a global ``batch``: None for one process (all of it);
    ConfigError when the batch does not split evenly over the processes."""
    if w.size == 1:
        return None
    if batch % w.size:
        raise ConfigError(
            f"train.batch {batch} does not split evenly over {w.size} processes: make it a "
            f"multiple of {w.size}, or start a number of processes that divides it"
        )
    n = batch // w.size
    return Share(batch, slice(w.rank * n, (w.rank + 1) * n))


class _Step(nn.Module):
    """``step(model, *args)`` as a module's forward, so DDP sees the whole training step (the
    trainers call the model's parts, e.g. encode, rate and synthesize, not its forward)."""

    def __init__(self, model: nn.Module, step: Callable) -> None:
        super().__init__()
        self.model, self.step = model, step

    def forward(self, *args):
        return self.step(self.model, *args)


def parallel(model: nn.Module, step: Callable, w: World) -> Callable:
    """``step`` bound to ``model``: ``step(model, *args)`` with one process; with several, the
    same inside DistributedDataParallel, whose backward averages the gradients over the
    processes. ModelError for a model with batch normalisation, whose batch statistics would
    be each process's share's, not the batch's."""
    if w.size == 1:
        return lambda *args: step(model, *args)
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    if norms:
        raise ModelError(
            f"batch normalisation ({norms[0]}) normalises each process's share of the batch, "
            "not the batch: train this model in one process"
        )
    # static_graph: every step uses the same parameters, so a parameter a model never uses is
    # found once rather than by a graph search each step (all of semnet's own use them all)
    return nn.parallel.DistributedDataParallel(_Step(model, step), static_graph=True)


def average(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The processes' mean of each tensor (detached), in one all-reduce."""
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
    out = list(flat.split([t.numel() for t in tensors]))
    return [o.view(t.shape).to(t.dtype) for o, t in zip(out, tensors, strict=True)]


def barrier() -> None:
    """Wait for every process (nothing to wait for with one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def finish(w: World) -> None:
    """Wait for every process, rank 0 having published (for up to ``PUBLISH_TIMEOUT``)."""
    if w.publish_group is not None:
        dist.barrier(group=w.publish_group)
    else:
        barrier()
