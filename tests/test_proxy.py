"""The impairment proxy: real `semnet proxy` subprocesses on loopback (record/replay, run-time
control with `semnet ctl`, both directions, metrics), plus in-process checks of its bookkeeping.
"""

import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from semnet.client import request
from semnet.config import load
from semnet.core.impair import FateRecorder, Impairment, format_spec, parse_spec, parse_trace
from semnet.daemons.config import ProxyConfig, load_config
from semnet.daemons.proxy import Proxy, specs_from_body
from semnet.errors import ConfigError, SemnetError
from semnet.testbed import free_ports, stop_process

ROOT = Path(__file__).resolve().parents[1]
LOCAL = "127.0.0.1"


def semnet(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "semnet", *args], capture_output=True, text=True, timeout=timeout
    )


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


class Sink:
    """A UDP socket at the proxy's forward address, collecting datagram numbers in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.numbers: list[int] = []
        self.echo_to: tuple | None = None  # send every datagram back here (reverse direction)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            self.numbers.append(struct.unpack_from("!I", data)[0])
            if self.echo_to is not None:
                self.sock.sendto(data, self.echo_to)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


class ProxyProcess:
    """`semnet proxy` listening on ephemeral ports and forwarding to a Sink; always stopped."""

    def __init__(self, workdir: Path, *args: str) -> None:
        listen, http = free_ports(2)
        self.listen = (LOCAL, listen)
        self.http = f"{LOCAL}:{http}"
        self.sink = Sink()
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.settimeout(0.05)
        self.log = workdir / f"proxy-{listen}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "semnet", "--log-level", "warning", "proxy"]
                + ["--listen", f"{LOCAL}:{listen}", "--http", self.http]
                + ["--forward", f"{LOCAL}:{self.sink.address[1]}", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )

    def __enter__(self) -> "ProxyProcess":
        try:
            deadline = time.monotonic() + 30
            while True:
                if self.proc.poll() is not None:
                    raise SemnetError(f"proxy exited: {self.log.read_text()}")
                try:
                    self.metrics()
                    return self
                except SemnetError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> int:
        code = stop_process(self.proc, 10)
        self.sink.close()
        self.client.close()
        return code

    def metrics(self) -> str:
        return request(f"http://{self.http}/metrics", timeout=5.0)

    def send(self, first: int, count: int, size: int = 100) -> str:
        """Send numbered datagrams, paced so no socket buffer overflows; wait until the proxy
        has taken them all and the sink has everything the proxy sent; return /metrics."""
        for i in range(first, first + count):
            self.client.sendto(struct.pack("!I", i).ljust(size, b"."), self.listen)
            if i % 20 == 19:
                time.sleep(0.001)
        deadline = time.monotonic() + 10
        while True:
            text = self.metrics()
            arrived = metric(text, "semnet_proxy_datagrams_in_total", direction="forward")
            out = metric(text, "semnet_proxy_datagrams_out_total", direction="forward")
            if arrived >= first + count and len(self.sink.numbers) >= out:
                return text
            assert time.monotonic() < deadline, f"{arrived} in, {len(self.sink.numbers)} seen"
            time.sleep(0.02)

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return semnet("ctl", "proxy", *args, "--proxy", self.http)


# -- starting and refusing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "delay 100ms 20ms distribution normal",
        "delay 10ms reorder 25% 50%",
        "tc qdisc add dev eth0 root netem rate 5kbit 20 100 5",
        "loss state 1% 30% 5% 10% 0.1%",
        "slot distribution pareto 1ms 100us bytes 64k",
    ],
)
def test_proxy_starts_with_tc_netem_examples(tmp_path, spec):
    with ProxyProcess(tmp_path, "--impair", spec) as proxy:
        shown = json.loads(proxy.ctl("show", "--json").stdout)
        assert shown["forward"]["spec"] == format_spec(parse_spec(spec))
        assert proxy.stop() == 0


@pytest.mark.parametrize(
    ("spec", "token"),
    [
        ("loss gemodel 1% 130%", "'130%'"),
        ("delay 10ms jitterish", "'jitterish'"),
        ("delay 1e400s", "'1e400s' is too large"),  # was an OverflowError traceback
        ("limit 0", "limit: 0"),
    ],
)
def test_proxy_refuses_a_bad_spec_naming_the_token(spec, token):
    result = semnet("proxy", "--impair", spec)
    assert result.returncode == 2
    assert token in result.stderr and "impair:" in result.stderr
    assert "Traceback" not in result.stderr


# -- record and replay ------------------------------------------------------------------------


def lost_in(trace: str) -> set[int]:
    return {f.ordinal for f in parse_trace(trace.splitlines()) if f.action == "drop:loss"}


def test_record_twice_gives_the_same_trace_and_replay_loses_the_same(tmp_path):
    n, args = 2000, ("--impair", "loss gemodel 5% 40%", "--seed", "7")
    received = []
    for name in ("t1", "t2"):
        with ProxyProcess(tmp_path, *args, "--record", name) as proxy:
            proxy.send(0, n)
            assert proxy.stop() == 0
            received.append(sorted(proxy.sink.numbers))
    t1, t2 = (tmp_path / "t1").read_text(), (tmp_path / "t2").read_text()
    assert t1 == t2 and len(t1.splitlines()) == n + 1  # header + one line per datagram
    lost = set(range(n)) - set(received[0])
    assert 0 < len(lost) < n / 2
    assert lost == lost_in(t1)
    assert received[0] == received[1]

    with ProxyProcess(tmp_path, "--replay", "t1") as proxy:
        proxy.send(0, n)
        assert sorted(proxy.sink.numbers) == received[0]


def test_replay_of_a_measured_trace_loops(tmp_path):
    pattern = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    (tmp_path / "measured.txt").write_text(
        "# 0 delivered, 1 lost\n" + "".join(f"{b} 0ms\n" for b in pattern)
    )
    with ProxyProcess(tmp_path, "--replay", "measured.txt") as proxy:
        proxy.send(0, 200)
        assert sorted(proxy.sink.numbers) == [i for i in range(200) if not pattern[i % 10]]
        assert json.loads(proxy.ctl("show", "--json").stdout)["forward"]["replay"] == (
            "measured.txt"
        )


# -- run-time control -------------------------------------------------------------------------


def test_ctl_changes_the_impairment_at_run_time(tmp_path):
    with ProxyProcess(tmp_path) as proxy:
        result = proxy.ctl("set", "loss random 100%")
        assert result.returncode == 0, result.stderr
        assert "loss random 100%" in result.stdout
        proxy.send(0, 50)
        assert proxy.sink.numbers == []

        bad = proxy.ctl("set", "loss random 130%")
        assert bad.returncode == 2
        assert len(bad.stderr.strip().splitlines()) == 1 and "'130%'" in bad.stderr
        assert '"error"' not in bad.stderr  # the reason, not the JSON answer around it
        shown = json.loads(proxy.ctl("show", "--json").stdout)
        assert shown["forward"]["spec"] == "loss random 100%"

        assert proxy.ctl("reset").returncode == 0
        text = proxy.send(50, 50)
        assert proxy.sink.numbers == list(range(50, 100))
        changes = metric(text, "semnet_proxy_impairment_changes_total", direction="forward")
        assert changes == 2  # set and reset; the refused spec changed nothing


def test_ctl_reports_an_unreachable_proxy():
    (port,) = free_ports(1)
    result = semnet("ctl", "proxy", "show", "--proxy", f"{LOCAL}:{port}")
    assert result.returncode == 2 and "unreachable" in result.stderr


def test_reverse_direction_is_impaired_separately(tmp_path):
    with ProxyProcess(tmp_path, "--reverse", "loss random 100%") as proxy:
        proxy.sink.echo_to = proxy.listen
        proxy.send(0, 30)
        time.sleep(0.2)
        with pytest.raises(TimeoutError):
            proxy.client.recv(2048)  # every echo was lost on the way back
        assert proxy.ctl("set", "", "--direction", "reverse").returncode == 0
        text = proxy.send(30, 30)
        back = []
        while len(back) < 30:
            back.append(struct.unpack_from("!I", proxy.client.recv(2048))[0])
        assert back == list(range(30, 60))
        assert proxy.sink.numbers == list(range(60))
        text = proxy.metrics()
        assert metric(text, "semnet_proxy_datagrams_in_total", direction="reverse") == 60
        dropped = metric(text, "semnet_proxy_datagrams_dropped_total", direction="reverse")
        assert dropped == 30


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_show_histograms_and_counters_not_ratios(tmp_path):
    with ProxyProcess(tmp_path, "--impair", "delay 2ms loss gemodel 10% 50%") as proxy:
        text = proxy.send(0, 500)
    fwd = {"direction": "forward"}
    arrived = metric(text, "semnet_proxy_datagrams_in_total", **fwd)
    out = metric(text, "semnet_proxy_datagrams_out_total", **fwd)
    lost = metric(text, "semnet_proxy_datagrams_dropped_total", reason="loss", **fwd)
    assert "ratio" not in text  # a lifetime ratio hides a change: PromQL divides the rates
    assert 0 < lost < arrived and out == arrived - lost
    bursts = metric(text, "semnet_proxy_loss_burst_datagrams_count", **fwd)
    assert 0 < bursts <= lost
    assert metric(text, "semnet_proxy_loss_burst_datagrams_sum", **fwd) <= lost
    assert metric(text, "semnet_proxy_added_delay_seconds_count", **fwd) == out
    assert metric(text, "semnet_proxy_added_delay_seconds_bucket", le="0.001", **fwd) == 0
    assert metric(text, "semnet_proxy_added_delay_seconds_bucket", le="0.005", **fwd) == out
    assert "semnet_proxy_queue_datagrams" in text


# -- in process: bookkeeping ------------------------------------------------------------------


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, _: tuple) -> None:
        self.sent.append(data)


def in_process(**cfg) -> Proxy:
    proxy = Proxy(load(ProxyConfig, {"forward": f"{LOCAL}:9", **cfg}))
    proxy.sock = FakeSocket()
    return proxy


def feed(proxy: Proxy, count: int) -> list[bool]:
    """Pass ``count`` datagrams forward; True where one was dropped."""
    lost = []
    for i in range(count):
        before = len(proxy.sock.sent)
        proxy.on_datagram(b"%d" % i, (LOCAL, 5555))
        lost.append(len(proxy.sock.sent) == before)
    return lost


def test_loss_bursts_are_counted_when_they_end(tmp_path):
    (tmp_path / "t").write_text("0 1 1 0 1 0 1 1 1 0 1 1".replace(" ", "\n") + "\n")
    proxy = in_process(replay=str(tmp_path / "t"))
    feed(proxy, 12)  # the final burst of 2 is still running

    def bucket(le: str) -> float:
        return proxy.registry.get_sample_value(
            "semnet_proxy_loss_burst_datagrams_bucket", {"direction": "forward", "le": le}
        )

    assert [bucket(le) for le in ("1", "2", "3", "+Inf")] == [1, 2, 3, 3]
    assert proxy.registry.get_sample_value(
        "semnet_proxy_loss_burst_datagrams_sum", {"direction": "forward"}
    ) == (2 + 1 + 3)
    delays = proxy.registry.get_sample_value(
        "semnet_proxy_added_delay_seconds_bucket", {"direction": "forward", "le": "0.0"}
    )
    assert delays == 4  # every copy sent went out at once


def test_spec_seed_wins_and_reset_repeats_the_fates():
    proxy = in_process(impair="loss random 50% seed 9", seed=1)
    reference = Impairment(parse_spec("loss random 50%"), 9)
    expected = [not reference.process(b"x", 0.0) for _ in range(200)]
    assert feed(proxy, 200) == expected
    proxy.dirs["forward"].reset()
    assert feed(proxy, 200) == expected  # the same fates again, from the configured seed
    c = proxy.dirs["forward"].model.counters
    assert c.received == 400 and proxy.dirs["forward"].changes == 1


def test_set_during_replay_and_reset_back(tmp_path):
    (tmp_path / "t").write_text("1\n0\n")
    proxy = in_process(replay=str(tmp_path / "t"), seed=3)
    forward = proxy.dirs["forward"]
    assert feed(proxy, 3) == [True, False, True]
    forward.set(parse_spec("loss random 100%"))
    assert proxy.show()["forward"] == {"spec": "loss random 100%", "replay": None, "changes": 1}
    assert feed(proxy, 3) == [True] * 3
    forward.reset()
    assert feed(proxy, 2) == [True, False]  # the replay restarts at its first record
    assert forward.model.counters.received == 8


def test_recorded_ordinals_stay_consecutive_across_changes():
    proxy = in_process(impair="loss random 30%", seed=5)
    stream = io.StringIO()
    proxy.dirs["forward"].recorder = FateRecorder(stream)
    feed(proxy, 20)
    proxy.dirs["forward"].reset()
    feed(proxy, 20)
    fates = parse_trace(stream.getvalue().splitlines())
    assert [f.ordinal for f in fates] == list(range(40))
    assert [f.action for f in fates[:20]] == [f.action for f in fates[20:]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("nonsense", "body is not JSON"),
        ('{"sideways": ""}', "body must map some of"),
        ("{}", "body must map some of"),
        ('{"forward": 5}', "forward: expected a netem string or a mapping"),
        ('{"forward": "", "reverse": "loss 130%"}', "reverse: loss random: '130%'"),
    ],
)
def test_put_body_errors_name_the_problem(body, message):
    with pytest.raises(ConfigError, match=message):
        specs_from_body(body)


def test_put_body_takes_strings_and_mappings():
    specs = specs_from_body('{"forward": {"loss": {"random": {"percent": "10%"}}}, "reverse": ""}')
    assert specs["forward"] == parse_spec("loss random 10%") and specs["reverse"] == parse_spec("")


def test_a_forward_host_name_is_resolved_so_replies_are_recognised():
    assert in_process(forward="localhost:9").forward_addr == (LOCAL, 9)


# -- configs ----------------------------------------------------------------------------------


def test_record_and_replay_config_keys(tmp_path):
    cfg = load(ProxyConfig, {"record": "a.trace", "replay": "b.trace"})
    assert (cfg.record, cfg.replay) == ("a.trace", "b.trace")
    with pytest.raises(ConfigError, match=r"^record: .* is the file being replayed"):
        load(ProxyConfig, {"record": str(tmp_path / "t"), "replay": str(tmp_path / "." / "t")})


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "impair").glob("*.yaml")) + [ROOT / "configs/proxy.yaml"]
)
def test_shipped_proxy_configs_load(path):
    proxy = Proxy(load_config(ProxyConfig, str(path), {}))
    assert set(proxy.show()) == {"forward", "reverse"}


def test_impairment_profiles_exist():
    assert len(list((ROOT / "configs" / "impair").glob("*.yaml"))) >= 3


def test_a_link_gathers_slots_and_exports_received_snr():
    import asyncio

    async def run() -> tuple[Proxy, list[int]]:
        proxy = in_process(impair="link awgn snr 30dB subcarriers 4 power equal")
        seen = []
        for i in range(3):
            proxy.on_datagram(b"%d" % i, (LOCAL, 5555))
        seen.append(len(proxy.sock.sent))  # held: the slot is not full
        proxy.on_datagram(b"3", (LOCAL, 5555))
        seen.append(len(proxy.sock.sent))  # full slot: all four go out, in order
        proxy.on_datagram(b"4", (LOCAL, 5555))
        await asyncio.sleep(0.2)  # a short slot leaves after the wait
        seen.append(len(proxy.sock.sent))
        return proxy, seen

    proxy, seen = asyncio.run(run())
    assert seen == [0, 4, 5]
    assert proxy.sock.sent == [b"%d" % i for i in range(5)]
    assert proxy.forward.model.link.slots == 2
    text = generate_latest(proxy.registry).decode()
    # edges below 0 dB: the client library leaves out _sum and _count; +Inf is the count
    assert metric(text, "semnet_proxy_link_snr_db_bucket", direction="forward", le="+Inf") == 5
    assert metric(text, "semnet_proxy_link_snr_db_bucket", direction="forward", le="20.0") == 0
