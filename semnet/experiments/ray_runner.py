"""Sweep cells as Ray tasks: ``semnet sweep --ray [ADDRESS|auto|local]`` (the ``ray`` extra).

Imported only when ``--ray`` is given; without Ray installed the import raises a one-line
SemnetError naming ``pip install 'semnet[ray]'``. :func:`executor` connects (or starts a local
Ray with ``workers`` CPUs) and gives :func:`semnet.experiments.sweep.run_sweep` an executor that
submits one task per cell and yields each row as it finishes; ``run_sweep`` journals it and puts
the rows back in cell order.

Each task runs :func:`semnet.experiments.sweep.measure_cell`, the serial path's cell function,
on a per-process runner (:func:`semnet.experiments.sweep.offline_runner`): a worker process
loads the codecs once, at its first cell of a sweep, with its torch and engine threads set to
``threads``; each task reserves ``threads`` CPUs, so workers x threads never exceeds the cores
Ray was given. A cell that raises is a ``failed`` row (deterministic: not retried). A worker
that dies mid-cell (killed, out of memory, node lost) is resubmitted by the driver up to
``retries`` times, and the row it then gives says ``retried`` with the crash's text; Ray's own
``max_retries`` would retry as well but never tell the driver, so it is 0 here.
"""

import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Iterator

from semnet.errors import SemnetError
from semnet.experiments.sweep import (
    Cell,
    Executor,
    Offline,
    Work,
    failed_row,
    measure_cell,
    offline_runner,
)
from semnet.models import zoopath

try:
    import ray
    import ray.exceptions
except ImportError as exc:
    raise SemnetError(f"--ray: Ray is not installed ({exc}; pip install 'semnet[ray]')") from None

log = logging.getLogger(__name__)
DEFAULT_RETRIES = 2  # resubmissions of a cell whose worker died
CONNECT_TIMEOUT_S = 5.0

_RUNNERS: dict[str, Offline] = {}  # in a worker process: the runner of the current sweep


def _cell(token: str, box: list, cell: Cell) -> dict:
    """One cell in a worker: the sweep's runner built once per process (``box`` holds the
    Work's object reference, unresolved, so later cells do not fetch it again)."""
    runner = _RUNNERS.get(token)
    if runner is None:
        work: Work = ray.get(box[0])
        _RUNNERS.clear()  # one sweep's models at a time
        if work.zoo:
            os.environ[zoopath.ENV] = work.zoo
        runner = _RUNNERS[token] = offline_runner(work)
    return measure_cell(runner, cell)


def _reachable(address: str) -> None:
    """A HOST:PORT address answers a TCP connection within CONNECT_TIMEOUT_S, or a SemnetError
    (ray.init itself keeps retrying an unreachable address, logging each attempt)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # auto, ray://..., or a form Ray parses itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SemnetError(f"--ray {address}: cannot reach a Ray cluster there ({exc})") from None


@contextlib.contextmanager
def connected(address: str = "local", workers: int | None = None) -> Iterator[None]:
    """Ray connected for the block: ``local`` starts a private Ray on this machine with
    ``workers`` CPUs (default: every core) and stops it after; ``auto`` or HOST:PORT joins a
    running cluster. A process already connected (a test's fixture) keeps its connection."""
    if ray.is_initialized():
        yield
        return
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    if address == "local":
        options["num_cpus"] = workers or os.cpu_count() or 1
        # Ray nices its workers to 15 by default: beside any other job they would lose the
        # cores a serial sweep (niceness 0) gets; here they compete as the serial sweep does
        options["_system_config"] = {"worker_niceness": 0}
    else:
        if workers is not None:
            raise SemnetError("--ray-workers: only for --ray local (a cluster has its own)")
        _reachable(address)
        options["address"] = address
    try:
        ray.init(**options)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SemnetError(f"--ray {address}: cannot start or join Ray ({first})") from None
    try:
        yield
    finally:
        ray.shutdown()


def executor(retries: int = DEFAULT_RETRIES):
    """``run_sweep``'s ``distribute``: Work -> an executor running each cell as a Ray task on
    the Ray this process is connected to (see :func:`connected`)."""

    def distribute(work: Work) -> Executor:
        if not ray.is_initialized():
            raise SemnetError("--ray: not connected to Ray")
        cpus = ray.cluster_resources().get("CPU", 0)
        if work.threads > cpus:  # no worker could take a task: it would wait for ever
            raise SemnetError(f"--threads {work.threads}: more than Ray's {cpus:g} CPUs")
        work = dataclasses.replace(work, zoo=os.environ.get(zoopath.ENV, ""))
        box = [ray.put(work)]
        token = uuid.uuid4().hex
        task = ray.remote(_cell).options(
            num_cpus=work.threads, max_retries=0, retry_exceptions=False
        )
        return lambda todo: _run(task, token, box, todo, retries)

    return distribute


def _run(task, token: str, box: list, todo: list[Cell], retries: int) -> Iterator[dict]:
    """Submit every cell, yield each row as its task finishes; resubmit a cell whose worker
    died (up to ``retries`` times), a failed row once it has died ``retries + 1`` times."""
    pending = {task.remote(token, box, cell): (cell, 0, None) for cell in todo}
    log.info("sweep: %d cells submitted to Ray (%s CPUs)", len(todo), _cpus())
    try:
        while pending:
            try:
                ready, _ = ray.wait(list(pending), num_returns=1)
            except ray.exceptions.RayError as exc:  # the cluster itself went away
                raise SemnetError(f"--ray: lost Ray ({_first_line(exc)})") from None
            for ref in ready:
                cell, attempts, crash = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # raised outside measure_cell
                    yield failed_row(cell, _first_line(exc.cause or exc))
                    continue
                except ray.exceptions.RayError as exc:  # the worker or its node went away
                    text = f"worker lost (attempt {attempts + 1}): {_first_line(exc)}"
                    if attempts < retries:
                        log.warning("sweep: %s; resubmitted", text)
                        pending[task.remote(token, box, cell)] = (cell, attempts + 1, text)
                    else:
                        yield failed_row(cell, text)
                    continue
                if crash is not None and row["status"] == "ok":
                    row = {**row, "status": "retried", "error": crash}
                yield row
    finally:
        for ref in pending:  # interrupted: nothing left running for a sweep that is gone
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _cpus() -> str:
    return f"{ray.cluster_resources().get('CPU', 0):g}"
