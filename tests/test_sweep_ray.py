"""`semnet sweep --ray`: rows equal to the serial sweep's, resume after an interrupt, a worker
killed mid-cell retried, a cell that keeps killing its worker recorded as failed, and the
one-line errors (Ray missing, an unreachable address, --online). A local Ray, 2 CPUs."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_baselines import picture

from semnet import experiments
from semnet.cli import sweep as sweep_cli
from semnet.cli.main import cli
from semnet.errors import SemnetError
from semnet.experiments.journal import Journal
from semnet.experiments.sweep import SweepSpec, run_sweep
from semnet.models.cnn import CNNCodec

SPEC = SweepSpec(
    codecs=("tiny", "jpeg+rs20"),
    partitions=("channel", "spatial"),
    losses=(0.0, 0.3),
    datagram_size=200,
)  # 2 x 2 x 2 tiny cells + 2 x 2 jpeg cells


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return CNNCodec(cbr=1 / 12, hidden=8, bits=5).eval()


@pytest.fixture(scope="module")
def tiny(codec):
    return lambda name, threads: (codec, 1, {"name": name})


@pytest.fixture(scope="module")
def images():
    return {"astronaut": picture("astronaut"), "chelsea": picture("chelsea")}


@pytest.fixture(scope="module")
def runner():
    for command in sweep_cli.COMMANDS:
        cli.add_command(command)
    return CliRunner()


def test_ray_missing_is_one_line_naming_the_extra(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    monkeypatch.delitem(sys.modules, "semnet.experiments.ray_runner", raising=False)
    monkeypatch.delattr(experiments, "ray_runner", raising=False)
    result = runner.invoke(cli, ["sweep", "--ray", "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "pip install 'semnet[ray]'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray", "--online"], "--ray: offline sweeps only"),
        (["--ray-workers", "2"], "--ray-workers: only with --ray local"),
    ],
)
def test_ray_flags_that_cannot_work_are_refused(runner, tmp_path, args, message):
    result = runner.invoke(cli, ["sweep", *args, "--out", str(tmp_path / "out.json")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr


ray = pytest.importorskip("ray")
from semnet.experiments import ray_runner  # noqa: E402 (needs ray)


def test_an_unreachable_address_is_one_line(runner, tmp_path):
    if ray.is_initialized():
        pytest.skip("this process is connected to a Ray already")
    args = ["sweep", "--ray", "127.0.0.1:9", "--codec", "jpeg", "--out", str(tmp_path / "o")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "--ray 127.0.0.1:9: cannot reach a Ray cluster there" in result.stderr


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for the module; tests/ importable in its workers."""
    before = os.environ.get("PYTHONPATH")
    tests = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [tests, before]))
    try:
        with ray_runner.connected("local", workers=2):
            yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def serial(tiny, images, tmp_path_factory):
    """The serial sweep at 1 thread (what each Ray worker uses) and its journal."""
    path = tmp_path_factory.mktemp("serial") / "rows.jsonl"
    result = run_sweep(images, SPEC, load=tiny, journal=Journal(path), threads=1)
    return result, path.read_text()


@pytest.mark.slow  # a local Ray starts (~3-8 s) and its workers import torch
def test_ray_rows_equal_serial_rows_and_the_journal_is_the_same_file(
    local_ray, tiny, images, serial, tmp_path
):
    path, loads = tmp_path / "rows.jsonl", tmp_path / "loads"

    def load(name, threads):  # the tiny codec, noting which process loaded it
        with loads.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return tiny(name, threads)

    distribute = ray_runner.executor()
    result = run_sweep(
        images, SPEC, load=load, journal=Journal(path), threads=1, distribute=distribute
    )
    pids = loads.read_text().split()
    assert len(pids) == len(set(pids)) <= 1 + 2  # the driver and each worker: once per process
    assert len(result["rows"]) == 12 and result["failed"] == []
    assert result["cells"] == {"ok": 12, "retried": 0, "failed": 0}
    assert json.dumps(result["rows"]) == json.dumps(serial[0]["rows"])
    assert path.read_text() == serial[1]  # settled in cell order


class Counting:
    """A ``distribute`` that counts the cells it is given."""

    def __init__(self) -> None:
        self.cells = 0
        self.inner = ray_runner.executor()

    def __call__(self, work):
        execute = self.inner(work)

        def counted(todo):
            self.cells += len(todo)
            return execute(todo)

        return counted


@pytest.mark.slow  # a local Ray starts (~3-8 s) and its workers import torch
def test_an_interrupted_ray_sweep_resumes_to_the_same_file(
    local_ray, tiny, images, serial, tmp_path, monkeypatch
):
    path = tmp_path / "rows.jsonl"
    append = Journal.append

    def interrupt_after_6(self, row):
        if self.rows == 6:
            raise KeyboardInterrupt
        append(self, row)

    monkeypatch.setattr(Journal, "append", interrupt_after_6)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(
            images, SPEC, load=tiny, journal=Journal(path), threads=1,
            distribute=ray_runner.executor(),
        )  # fmt: skip
    assert len(path.read_text().splitlines()) == 1 + 6
    monkeypatch.setattr(Journal, "append", append)
    counting = Counting()
    result = run_sweep(
        images, SPEC, load=tiny, journal=Journal(path), resume=True, threads=1,
        distribute=counting,
    )  # fmt: skip
    assert counting.cells == 12 - 6
    assert json.dumps(result["rows"]) == json.dumps(serial[0]["rows"])
    assert path.read_text() == serial[1]


class Dying:
    """The tiny codec, but a worker process (not the driver) that encodes with it dies at once:
    the first time only when ``marker`` is given (it is created then), else every time."""

    def __init__(self, codec, marker: Path | None) -> None:
        self.codec, self.marker, self.driver = codec, marker, os.getpid()

    def __getattr__(self, name):
        if "codec" not in self.__dict__:  # being unpickled
            raise AttributeError(name)
        return getattr(self.codec, name)

    def encode(self, x):
        if os.getpid() != self.driver and (self.marker is None or not self.marker.exists()):
            if self.marker is not None:
                self.marker.touch()
            os._exit(1)  # as a kill -9 or the OOM killer would end it
        return self.codec.encode(x)


SMALL = SweepSpec(codecs=("tiny", "jpeg"), losses=(0.3,), datagram_size=200)  # 4 cells


@pytest.mark.slow  # a local Ray starts (~3-8 s) and its workers import torch
def test_a_worker_killed_mid_cell_is_retried_and_its_row_is_the_same(
    local_ray, codec, tiny, images, tmp_path
):
    dying = Dying(codec, tmp_path / "died")
    load = lambda name, threads: (dying, 1, {"name": name})  # noqa: E731
    want = run_sweep(images, SMALL, load=tiny, threads=1)["rows"]
    result = run_sweep(images, SMALL, load=load, threads=1, distribute=ray_runner.executor())
    assert (tmp_path / "died").exists()
    assert result["cells"]["failed"] == 0 and result["cells"]["retried"] >= 1
    for got, row in zip(result["rows"], want, strict=True):
        if got["status"] == "retried":
            assert got["error"].startswith("worker lost (attempt 1)")
            got = {**got, "status": "ok", "error": None}
        assert got == row


@pytest.mark.slow  # a local Ray starts (~3-8 s) and its workers import torch
def test_a_cell_that_keeps_killing_its_worker_is_failed_and_the_rest_finish(
    local_ray, codec, images, tmp_path
):
    dying = Dying(codec, None)
    load = lambda name, threads: (dying, 1, {"name": name})  # noqa: E731
    path = tmp_path / "rows.jsonl"
    distribute = ray_runner.executor(retries=1)
    result = run_sweep(
        images, SMALL, load=load, journal=Journal(path), threads=1, distribute=distribute
    )
    assert result["cells"] == {"ok": 2, "retried": 0, "failed": 2}
    assert {r["codec"] for r in result["rows"]} == {"jpeg"}
    for row in result["failed"]:
        assert row["codec"] == "tiny" and row["error"].startswith("worker lost (attempt 2)")
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [r["status"] for r in lines] == ["failed", "failed", "ok", "ok"]  # cell order


@pytest.mark.slow  # a local Ray starts (~3-8 s) and its workers import torch
def test_sweep_command_on_ray_gives_the_serial_rows(local_ray, runner, folder, tmp_path):
    """Through the CLI with a zoo codec (loaded in each worker) and a classical one."""
    args = ["sweep", "--images", str(folder), "--codec", "cnn-c64,jpeg", "--loss", "0,0.2"]
    args += ["--datagram-size", "300", "--threads", "1"]
    rows = {}
    for name, extra in (("serial", []), ("ray", ["--ray"])):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(cli, [*args, *extra, "--out", str(out)])
        assert result.exit_code == 0, result.output
        rows[name] = json.loads(out.read_text())["rows"]
    assert len(rows["ray"]) == 8
    assert json.dumps(rows["ray"]) == json.dumps(rows["serial"])


@pytest.mark.slow  # a local Ray starts
def test_more_threads_than_ray_has_cpus_is_refused_not_a_hang(local_ray, tiny, images):
    with pytest.raises(SemnetError, match="--threads 3: more than Ray's 2 CPUs"):
        run_sweep(images, SMALL, load=tiny, threads=3, distribute=ray_runner.executor())
