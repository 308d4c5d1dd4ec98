"""The compose topology as separate hosts: one network namespace per daemon, and a real Prometheus.

Each daemon runs in its own namespace with its own addresses, from the container configs
(deploy/configs/*.yaml) as they are — peers named `proxy` and `receiver`, resolved through a
per-namespace hosts file (/etc/netns/NS/hosts, which `ip netns exec` mounts over /etc/hosts) —
except that the receiver's data socket binds the address of its link. The proxy serves two links
and binds the wildcard, as in compose: bound to its sender-side address it would send the
receiver datagrams from an address the receiver has no route back to, and every receiver report
would fail there (the reverse path is asserted below). A fourth namespace plays
the monitoring host: Prometheus, with docker/prometheus.yml at a 1 s interval, scrapes all three.

    sender 10.77.1.2 ──data── 10.77.1.1 proxy 10.77.2.1 ──data── 10.77.2.2 receiver
    sender 10.77.3.1 ─────────── side channel ─────────────────── 10.77.3.2 receiver
    monitor 10.77.10.1/11.1/12.1 ── sender 10.77.10.2, proxy 10.77.11.2, receiver 10.77.12.2

The side channel (reference images and reports, reliable HTTP) is a link of its own rather than
a route through the proxy's namespace: with forwarding on there, a datagram sent straight to
the receiver would be forwarded by the kernel and pass the proxy namespace without the proxy
process seeing it, so a misaddressed data path would still "work". Here no namespace forwards
or has a default route, so data reaches the receiver only through the proxy process, and the
accounting identity checked below says so. Addresses exist only inside these namespaces.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_deploy import (
    DAEMON_CONFIGS,
    PROMETHEUS,
    ROOT,
    dashboard,
    metric_names,
    promql_queries,
)

from semnet.daemons.metrics import loss_bucket
from semnet.daemons.net import parse_address
from semnet.images import load_image, save_png

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROLES = ("sender", "proxy", "receiver", "monitor")
LINKS = (  # (namespace, address, namespace, address), each a /24 of its own
    ("sender", "10.77.1.2", "proxy", "10.77.1.1"),  # data, into the proxy
    ("proxy", "10.77.2.1", "receiver", "10.77.2.2"),  # data, out of the proxy
    ("sender", "10.77.3.1", "receiver", "10.77.3.2"),  # side channel
    ("monitor", "10.77.10.1", "sender", "10.77.10.2"),  # scrapes
    ("monitor", "10.77.11.1", "proxy", "10.77.11.2"),
    ("monitor", "10.77.12.1", "receiver", "10.77.12.2"),
)
PEERS = {  # what each host calls the others: its /etc/hosts
    "sender": {"proxy": "10.77.1.1", "receiver": "10.77.3.2"},
    "proxy": {"receiver": "10.77.2.2"},
    "receiver": {},
    "monitor": {"sender": "10.77.10.2", "proxy": "10.77.11.2", "receiver": "10.77.12.2"},
}
DATA_BIND = {"receiver": "10.77.2.2"}
IMPAIR = "loss random 20%"
PROMETHEUS_HTTP = "127.0.0.1:9090"  # inside the monitor namespace
FETCH = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
)
START_TIMEOUT = 90.0
MULTITASK_ONLY = {"semnet_frame_task_total"}  # a multi-task codec's metrics only


class Unavailable(Exception):
    """Network namespaces cannot be made here."""


class Hosts:
    """Four namespaces joined by veth pairs, with processes in them; close() undoes it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        suffix = secrets.token_hex(3)
        self.ns = {role: f"semnet-{suffix}-{role}" for role in ROLES}
        self.veth = f"sn{suffix}"
        self.made: list[str] = []
        self.etc = Path("/etc/netns")
        self.etc_existed = self.etc.exists()
        self.procs: dict[str, subprocess.Popen] = {}

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)

    def build(self) -> None:
        for role, ns in self.ns.items():
            try:
                self.ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                if not self.made:
                    raise Unavailable(exc.stderr.strip()) from None
                raise
            self.made.append(ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
            hosts = self.etc / ns / "hosts"
            hosts.parent.mkdir(parents=True, exist_ok=True)
            lines = ["127.0.0.1 localhost", *(f"{a} {n}" for n, a in PEERS[role].items())]
            hosts.write_text("\n".join(lines) + "\n")
        for i, (role_a, addr_a, role_b, addr_b) in enumerate(LINKS):
            a = (self.ns[role_a], f"{self.veth}{i}a", addr_a)
            b = (self.ns[role_b], f"{self.veth}{i}b", addr_b)
            peer = ("peer", "name", b[1], "netns", b[0])
            self.ip("link", "add", a[1], "netns", a[0], "type", "veth", *peer)
            for ns, dev, addr in (a, b):
                self.ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                self.ip("-n", ns, "link", "set", dev, "up")

    def start(self, name: str, role: str, *argv: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        log.close()

    def check_running(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")
                raise AssertionError(f"{name} exited with {proc.returncode}: {log[-2000:]}")

    def run(self, role: str, *argv: str, timeout: float = 60.0) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns[role], *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def query(self, expr: str) -> list[dict]:
        """An instant PromQL query to the monitor's Prometheus: the result vector."""
        url = f"http://{PROMETHEUS_HTTP}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.loads(self.run("monitor", sys.executable, "-c", FETCH, url))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self, name: str, sig: int) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for name in [n for n in ("sender", "proxy", "receiver") if n in self.procs]:
            self.stop(name, signal.SIGINT)
        for name in list(self.procs):
            self.stop(name, signal.SIGTERM)
        for ns in self.made:  # deleting a namespace deletes its veth ends
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
            shutil.rmtree(self.etc / ns, ignore_errors=True)
        if not self.etc_existed:
            with contextlib.suppress(OSError):
                self.etc.rmdir()


def wait_for(what: str, ready, hosts: Hosts, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        hosts.check_running()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture
def hosts(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns")
    for command in ("ip", "prometheus"):
        if shutil.which(command) is None:
            pytest.skip(f"{command} is not installed (scripts/install_test_tools.sh installs it)")
    topology = Hosts(tmp_path)
    try:
        topology.build()
    except Unavailable as exc:
        topology.close()
        pytest.skip(f"ip netns is unavailable here: {exc}")
    try:
        yield topology
    finally:
        topology.close()


def daemon_config(name: str, tmp_path: Path) -> Path:
    """deploy/configs/NAME.yaml with the data socket bound to its link, one torch thread (two
    cores here), the receiver's output in tmp_path, the impairment under test, and the shared
    key in tmp_path where the compose file's keygen service would have written it."""
    cfg = yaml.safe_load((ROOT / "deploy" / "configs" / f"{name}.yaml").read_text())
    cfg["auth_key_file"] = str(key_file(tmp_path))
    if name in DATA_BIND:
        cfg["listen"] = f"{DATA_BIND[name]}:{parse_address(cfg['listen'])[1]}"
    if name in ("sender", "receiver"):
        cfg["threads"] = 1
    if name == "receiver":
        cfg["output"] = str(tmp_path / "received")
    if name == "proxy":
        cfg["impair"], cfg["seed"] = IMPAIR, 7
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "semnet.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_bytes(os.urandom(32).hex().encode())
    return path


def all_up(hosts: Hosts) -> bool:
    """Prometheus answers and has scraped all three daemons successfully."""
    try:
        up = hosts.query("up")
    except AssertionError:  # Prometheus not answering yet
        return False
    return len(up) == len(DAEMON_CONFIGS) and all(r["value"][1] == "1" for r in up)


def prometheus_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_three_hosts_scraped_by_prometheus_close_the_books(hosts, tmp_path):
    hosts.start(
        "prometheus",
        "monitor",
        "prometheus",
        f"--config.file={prometheus_config(tmp_path)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address={PROMETHEUS_HTTP}",
    )
    for name in ("receiver", "proxy", "sender"):
        config = daemon_config(name, tmp_path)
        hosts.start(name, name, sys.executable, "-m", "semnet", name, "--config", str(config))
    wait_for("Prometheus to scrape the three daemons", lambda: all_up(hosts), hosts)
    up = {r["metric"]["job"]: r["value"][1] for r in hosts.query("up")}
    assert up == {name: "1" for name in DAEMON_CONFIGS}

    photos = []
    for name in ("astronaut", "chelsea", "coffee"):
        image = load_image(ROOT / "semnet" / "demo_images" / f"{name}.png")
        photos.append(
            str(save_png(np.ascontiguousarray(image[:192, :256]), tmp_path / f"{name}.png"))
        )
    send = ("-m", "semnet", "send", *photos, *photos, "--sender", "127.0.0.1:7000", "--json")
    send += ("--auth-key-file", str(key_file(tmp_path)))
    out = hosts.run("sender", sys.executable, *send, timeout=180)
    reports = json.loads(out)
    assert len(reports) == 6 and all(r["psnr_db"] is not None for r in reports)
    sent = sum(r["datagrams_sent"] for r in reports)
    received = sum(r["datagrams_received"] for r in reports)
    assert 0 < received < sent  # the impairment dropped some, not all

    def scraped() -> bool:  # the last frame's counters have reached Prometheus
        frames = hosts.value("sum(semnet_frame_psnr_db_count)")
        return frames == len(reports) and hosts.value("sum(semnet_datagrams_sent_total)") == sent

    wait_for("the last scrape", scraped, hosts, timeout=30)
    dropped = 'sum(semnet_proxy_datagrams_dropped_total{direction="forward"})'
    assert hosts.value("sum(semnet_datagrams_received_total)") == received
    assert hosts.value(dropped) == sent - received
    assert hosts.value('sum(semnet_proxy_datagrams_in_total{direction="forward"})') == sent
    identity = (
        f"sum(semnet_datagrams_sent_total) - sum(semnet_datagrams_received_total) - {dropped}"
    )
    assert hosts.value(identity) == 0
    # the receiver's reports came back over the proxy's reverse direction to the sender
    assert hosts.value("sum(semnet_receiver_report_errors_total)") == 0
    assert hosts.value("sum(semnet_sender_feedback_reports_total)") > 0

    psnr = hosts.query("sum by (loss_bucket) (semnet_frame_psnr_db_count)")
    buckets = {r["metric"]["loss_bucket"]: float(r["value"][1]) for r in psnr}
    expected = Counter(loss_bucket(r["loss_ratio"]) for r in reports)
    assert buckets == expected
    mean = hosts.query(
        "sum by (loss_bucket) (semnet_frame_psnr_db_sum) / "
        "sum by (loss_bucket) (semnet_frame_psnr_db_count)"
    )
    assert {r["metric"]["loss_bucket"] for r in mean} == set(expected)

    # Every dashboard query runs on this Prometheus, and draws something from the three hosts
    # (but those of a multi-task codec's panels, empty with the default codec here).
    for expr in promql_queries(dashboard()):
        result = hosts.query(expr)
        assert result or metric_names(expr) <= MULTITASK_ONLY, f"no data for {expr}"
