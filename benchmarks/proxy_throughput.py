"""Datagrams per second through the real impairment proxy, against a bare forwarder.

Two forwarders run side by side as subprocesses on uvloop with the same draining reader
(``semnet.daemons.net.drain``): the real ``semnet proxy`` with ``loss gemodel 1% 30%``, and a
bare forwarder that only sends each datagram on. A blaster subprocess sends ``--count``
1200-byte datagrams to one of them as fast as it can; this process is the sink. The forwarders
are pinned to one CPU, blaster and sink to another; trials alternate between the two. Each
trial reports the forwarded rate (datagrams/s at the sink, plus the proxy's own drops) and the
rate per CPU-second of the forwarder (from /proc: what it would do on a core of its own, robust
to other load). Then, at zero impairment (set over the proxy's HTTP API), unpinned, single
datagrams are timed one way (same clock at both ends) directly, through the bare forwarder and
through the proxy, interleaved, for the added latency. Linux only (/proc, CPU affinity).

    .venv/bin/python benchmarks/proxy_throughput.py [--count 100000] [--trials 3] [--out FILE]

Loopback only, bounded in count and time. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from results_io import write_json  # noqa: E402 (sibling module; benchmarks run as scripts)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "proxy_throughput.json"
IMPAIR = "loss gemodel 1% 30%"
LOCAL = "127.0.0.1"
SIZE = 1200
IDLE = 0.3  # seconds without a datagram after the blaster ended: the trial is over
BLAST_TIMEOUT = 60.0
START_TIMEOUT = 30.0
TICK = os.sysconf("SC_CLK_TCK")
CPUS = sorted(os.sched_getaffinity(0))
LOAD_CPU, FORWARDER_CPU = (CPUS[0], CPUS[-1]) if len(CPUS) > 1 else (None, None)


# -- the child roles ---------------------------------------------------------------------------


def bare_forwarder(listen: str, forward: str) -> None:
    """The baseline: the proxy's loop, socket and draining reader, no impairment."""
    import asyncio

    from semnet.daemons.net import drain, new_event_loop, parse_address, udp_socket

    sock = udp_socket(parse_address(listen))
    dest = parse_address(forward)
    sendto = sock.sendto

    def handle(data: bytes, _: tuple) -> None:
        try:  # noqa: SIM105 (try costs nothing here; contextlib.suppress does, per datagram)
            sendto(data, dest)
        except OSError:
            pass

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    loop.add_reader(sock.fileno(), drain(sock, handle))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    print(f"ready {type(loop).__module__}", flush=True)
    loop.run_forever()


def blast(target: str, count: int, size: int) -> None:
    """Send ``count`` numbered datagrams as fast as one blocking socket can; report the rate."""
    host, port = target.rsplit(":", 1)
    addr = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytearray(size)
    pack_into, sendto = struct.pack_into, sock.sendto
    start = time.perf_counter()
    for i in range(count):
        pack_into("!I", payload, 0, i)
        try:  # noqa: SIM105 (as above: the hot loop)
            sendto(payload, addr)
        except OSError:  # ENOBUFS under pressure: that datagram is simply not offered
            pass
    seconds = time.perf_counter() - start
    print(json.dumps({"sent": count, "seconds": seconds}), flush=True)


# -- the parent --------------------------------------------------------------------------------


def pin(pid: int, cpu: int | None) -> None:
    """Forwarder on one CPU, blaster and sink on another: they never share a core's caches."""
    if cpu is not None:
        os.sched_setaffinity(pid, {cpu})


def unpin(pid: int) -> None:
    os.sched_setaffinity(pid, CPUS)


def free_ports(n: int) -> list[int]:
    from semnet.testbed import free_ports as free

    return free(n)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 2**20)
    sock.bind((LOCAL, 0))
    return sock


class Forwarder:
    """One forwarder subprocess and the sink it forwards to."""

    def __init__(self, name: str, proxy: bool) -> None:
        self.name = name
        self.sink = sink_socket()
        listen, http = free_ports(2)
        self.listen = f"{LOCAL}:{listen}"
        self.http = f"{LOCAL}:{http}" if proxy else None
        forward = f"{LOCAL}:{self.sink.getsockname()[1]}"
        if proxy:
            cmd = [sys.executable, "-m", "semnet", "--log-level", "warning", "proxy"]
            cmd += ["--listen", self.listen, "--forward", forward, "--http", self.http]
            cmd += ["--impair", IMPAIR, "--seed", "1"]
        else:
            cmd = [sys.executable, __file__, "--bare-forwarder", self.listen, forward]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        pin(self.proc.pid, FORWARDER_CPU)
        if proxy:
            self.wait_http()
        elif not self.proc.stdout.readline().startswith("ready"):
            raise SystemExit("bare forwarder did not start")

    def wait_http(self) -> None:
        from semnet.errors import SemnetError

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.metrics()
                return
            except SemnetError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{self.name} did not start") from None
                time.sleep(0.05)

    def metrics(self) -> str:
        from semnet.client import request

        return request(f"http://{self.http}/metrics", timeout=5.0)

    def dropped_by_impairment(self) -> int:
        if self.http is None:
            return 0
        from prometheus_client.parser import text_string_to_metric_families

        return int(
            sum(
                s.value
                for family in text_string_to_metric_families(self.metrics())
                for s in family.samples
                if s.name == "semnet_proxy_datagrams_dropped_total"
                and s.labels.get("direction") == "forward"
            )
        )

    def set_impairment(self, spec: str) -> None:
        from semnet.client import request

        request(f"http://{self.http}/impairment", json.dumps({"forward": spec}).encode(), "PUT")

    def close(self) -> None:
        from semnet.testbed import stop_process

        stop_process(self.proc, 10)
        self.sink.close()


def trial(fwd: Forwarder, count: int) -> dict:
    """Blast ``count`` datagrams through ``fwd``; count what reaches its sink."""
    dropped0, cpu0 = fwd.dropped_by_impairment(), cpu_seconds(fwd.proc.pid)
    blaster = subprocess.Popen(
        [sys.executable, __file__, "--blast", fwd.listen, str(count), str(SIZE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    pin(blaster.pid, LOAD_CPU)
    sink, buf = fwd.sink, bytearray(2048)
    sink.settimeout(IDLE)
    recv_into, clock = sink.recv_into, time.perf_counter
    delivered, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + BLAST_TIMEOUT
    while time.monotonic() < deadline:
        try:
            recv_into(buf)
        except TimeoutError:
            if blaster.poll() is not None:
                break
            continue
        last = clock()
        if not delivered:
            first = last
        delivered += 1
    if blaster.poll() is None:
        blaster.kill()
    offered = json.loads(blaster.communicate(timeout=10)[0] or '{"sent": 0, "seconds": 1}')
    cpu = cpu_seconds(fwd.proc.pid) - cpu0
    processed = delivered + fwd.dropped_by_impairment() - dropped0
    window = max(last - first, 1e-9)
    return {
        "offered_per_s": offered["sent"] / offered["seconds"],
        "delivered": delivered,
        "processed": processed,
        "lost_before_forwarder": count - processed,  # the forwarder's socket overflowed
        "window_s": window,
        "forwarder_cpu_s": cpu,
        "per_s": processed / window,
        "per_cpu_s": processed / cpu if cpu > 0 else None,
        "cpu_share": cpu / window,  # of one core: below 1, something else had the CPU
    }


def latencies(paths: dict[str, tuple[str, socket.socket]], pings: int) -> dict[str, list[float]]:
    """One-way µs per path, one datagram in flight at a time, paths interleaved."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = bytes(SIZE)
    out: dict[str, list[float]] = {name: [] for name in paths}
    for sink in (s for _, s in paths.values()):
        sink.settimeout(1.0)
    targets = {name: (LOCAL, int(addr.rsplit(":", 1)[1])) for name, (addr, _) in paths.items()}
    for i in range(pings + 50):  # the first 50 rounds warm up
        for name, (_, sink) in paths.items():
            start = time.perf_counter_ns()
            client.sendto(payload, targets[name])
            try:
                sink.recv(2048)
            except TimeoutError:
                continue
            if i >= 50:
                out[name].append((time.perf_counter_ns() - start) / 1e3)
    client.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="datagrams per trial (default 1e5)")
    p.add_argument("--trials", type=int, default=3, help="trials per forwarder (default 3)")
    p.add_argument("--pings", type=int, default=2000, help="latency samples per path")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON output file")
    p.add_argument("--bare-forwarder", nargs=2, metavar=("LISTEN", "FORWARD"), help="(child)")
    p.add_argument("--blast", nargs=3, metavar=("TARGET", "COUNT", "SIZE"), help="(child)")
    args = p.parse_args(argv)
    if args.bare_forwarder:
        bare_forwarder(*args.bare_forwarder)
        return 0
    if args.blast:
        blast(args.blast[0], int(args.blast[1]), int(args.blast[2]))
        return 0
    if not 1 <= args.count <= 2_000_000 or not 1 <= args.trials <= 20 or args.pings < 10:
        p.error("--count in 1..2e6, --trials in 1..20, --pings >= 10")

    load_at_start = os.getloadavg()[0]
    pin(os.getpid(), LOAD_CPU)
    forwarders = {"bare": Forwarder("bare", proxy=False), "proxy": Forwarder("proxy", proxy=True)}
    direct = sink_socket()
    runs: dict[str, list[dict]] = {name: [] for name in forwarders}
    try:
        for _ in range(args.trials):
            for name, fwd in forwarders.items():
                runs[name].append(trial(fwd, args.count))
        forwarders["proxy"].set_impairment("")
        for pid in (os.getpid(), *(f.proc.pid for f in forwarders.values())):
            unpin(pid)  # a woken forwarder should not wait for a busy pinned core
        lat = latencies(
            {
                "direct": (f"{LOCAL}:{direct.getsockname()[1]}", direct),
                "bare": (forwarders["bare"].listen, forwarders["bare"].sink),
                "proxy": (forwarders["proxy"].listen, forwarders["proxy"].sink),
            },
            args.pings,
        )
    finally:
        for fwd in forwarders.values():
            fwd.close()
        direct.close()

    try:
        import uvloop  # noqa: F401

        loop_kind = "uvloop"
    except ImportError:
        loop_kind = "asyncio"
    rates = {
        name: {
            "per_s_median": median_of(r, "per_s"),
            "per_cpu_s_median": median_of(r, "per_cpu_s"),
            "offered_per_s_median": median_of(r, "offered_per_s"),
            "cpu_share_median": median_of(r, "cpu_share"),
            "trials": r,
        }
        for name, r in runs.items()
    }
    ratio = rates["proxy"]["per_s_median"] / rates["bare"]["per_s_median"]
    bare_cpu, proxy_cpu = rates["bare"]["per_cpu_s_median"], rates["proxy"]["per_cpu_s_median"]
    ratio_cpu = proxy_cpu / bare_cpu if bare_cpu and proxy_cpu else None
    latency = {
        name: {"p50_us": pct(v, 50), "p99_us": pct(v, 99), "samples": len(v)}
        for name, v in lat.items()
    }
    for name in ("bare", "proxy"):
        latency[name]["added_p50_us"] = latency[name]["p50_us"] - latency["direct"]["p50_us"]
        latency[name]["added_p99_us"] = latency[name]["p99_us"] - latency["direct"]["p99_us"]

    print(
        f"{args.count} datagrams of {SIZE} B per trial, {args.trials} trials each, {loop_kind}, "
        f"{os.cpu_count()} CPUs, load average {load_at_start:.2f}; proxy impairment: {IMPAIR}"
    )
    print(
        f"\n{'forwarder':<10}{'datagrams/s':>13}{'per CPU-s':>12}{'CPU share':>11}"
        f"{'offered/s':>12}{'not taken':>11}"
    )
    for name, r in rates.items():
        lost = statistics.median(t["lost_before_forwarder"] for t in r["trials"])
        cpu = r["per_cpu_s_median"]
        print(
            f"{name:<10}{r['per_s_median']:>13,.0f}{cpu or float('nan'):>12,.0f}"
            f"{r['cpu_share_median']:>11.2f}{r['offered_per_s_median']:>12,.0f}{lost:>11,.0f}"
        )
    cpu_text = f"{ratio_cpu:.2f}" if ratio_cpu is not None else "-"
    print(f"ratio proxy/bare: {ratio:.2f} (datagrams/s), {cpu_text} (per CPU-second); goal >= 0.8")
    print(f"\n{'one way, µs':<12}{'p50':>8}{'p99':>8}{'added p50':>11}{'added p99':>11}")
    for name, v in latency.items():
        added = f"{v['added_p50_us']:>11.1f}{v['added_p99_us']:>11.1f}" if name != "direct" else ""
        print(f"{name:<12}{v['p50_us']:>8.1f}{v['p99_us']:>8.1f}{added}")

    result = {
        "benchmark": "proxy_throughput",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "event_loop": loop_kind,
            "load_average_1m_at_start": load_at_start,
        },
        "datagram_size": SIZE,
        "count": args.count,
        "trials": args.trials,
        "proxy_impairment": IMPAIR,
        "throughput": rates,
        "ratio_proxy_over_bare": ratio,
        "ratio_proxy_over_bare_per_cpu_s": ratio_cpu,
        "latency_zero_impairment": latency,
    }
    print(f"\nwrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
