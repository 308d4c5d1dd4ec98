"""A local testbed: sender, proxy and receiver as separate processes on loopback.

Used by `semnet demo` and the integration tests. Ports are ephemeral, configs are written to a
work folder, and every process is stopped (SIGINT, then SIGKILL) when the testbed closes. Tests
can kill and restart a daemon, inject datagrams of their own, read a daemon's memory, and check
that the three daemons' counters account for every datagram (:meth:`LocalTestbed.accounting`).

``senders=N`` starts N sender daemons, one stream each (``sender0``..``sender{N-1}``, streams
``stream``..``stream+N-1``; one sender is just ``sender``), through the one proxy to the one
receiver: the proxy's impairment is then one bottleneck they share.
:meth:`LocalTestbed.stream_accounting` checks the identities stream by stream.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from semnet.client import png_bytes, request, send_image
from semnet.daemons.net import udp_drops
from semnet.errors import SemnetError

START_TIMEOUT = 60.0
DAEMONS = ("receiver", "proxy", "sender")  # of a one-sender testbed; LocalTestbed.names in general


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """Stop a daemon as Ctrl-C does (SIGINT), killing it if it has not exited by ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_ports(n: int) -> list[int]:
    """n distinct free ports (TCP and UDP) on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


def metric_totals(text: str) -> dict[tuple, float]:
    """Prometheus exposition -> {(name, sorted label items): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(totals: dict[tuple, float], name: str, **match: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``match``."""
    return sum(
        v
        for (n, labels), v in totals.items()
        if n == name and all((k, m) in labels for k, m in match.items())
    )


def by_label(totals: dict[tuple, float], name: str, label: str, **match: str) -> dict[str, int]:
    """{label value: count} of the samples of ``name`` (whose labels include ``match``)."""
    out: dict[str, int] = {}
    for (n, labels), v in totals.items():
        found = dict(labels)
        if n == name and label in found and all(found.get(k) == m for k, m in match.items()):
            out[found[label]] = out.get(found[label], 0) + int(v)
    return out


@dataclass(frozen=True)
class Accounting:
    """Where every datagram of the data direction went, from the daemons' own counters.

    ``sent + injected == received + socket drops + proxy drops - duplicated + held`` and,
    inside the receiver, ``received == accepted + duplicates + late + malformed``. Proxy
    duplicates are counted apart: they are extra copies, so they come off the right side.
    Injected datagrams are the ones a test sent itself (:meth:`LocalTestbed.inject`); socket
    drops are the kernel's (a full receive queue), read from /proc/net/udp. Receiver reports
    travel the other way (the proxy's reverse direction) and are in none of these terms.
    """

    sent: int  # sender: datagrams_sent_total
    injected: dict[str, int]  # by the test, into the proxy or the receiver
    proxy_in: int
    proxy_dropped: dict[str, int]  # by reason
    proxy_duplicated: int
    proxy_out: int
    proxy_held: int  # copies the proxy still holds (delay, rate): 0 once traffic is over
    received: int
    accepted: int
    duplicates: int
    late: int
    malformed: dict[str, int]  # by reason
    socket_drops: dict[str, int]  # kernel drops on the proxy's and the receiver's sockets
    identities: dict[str, bool] = field(default_factory=dict)

    @property
    def closes(self) -> bool:
        return all(self.identities.values())

    def minus(self, before: "Accounting") -> "Accounting":
        """The counts since ``before`` (taken while no daemon restarted in between)."""

        def sub(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {k: a.get(k, 0) - b.get(k, 0) for k in a.keys() | b.keys()}

        fields = {}
        for name, value in vars(self).items():
            if name == "identities":
                continue
            if isinstance(value, dict):
                fields[name] = sub(value, getattr(before, name))
            elif name == "proxy_held":
                fields[name] = value  # a gauge
            else:
                fields[name] = value - getattr(before, name)
        return Accounting.build(**fields)

    @staticmethod
    def build(**terms) -> "Accounting":
        a = Accounting(**terms)
        ident = {
            "sender -> proxy": a.sent + a.injected["proxy"] == a.proxy_in + a.socket_drops["proxy"],
            "proxy": a.proxy_in - sum(a.proxy_dropped.values()) + a.proxy_duplicated == a.proxy_out,
            "proxy -> receiver": a.proxy_out - a.proxy_held + a.injected["receiver"]
            == a.received + a.socket_drops["receiver"],
            "receiver": a.received
            == a.accepted + a.duplicates + a.late + sum(a.malformed.values()),
        }
        return Accounting(**terms, identities=ident)


@dataclass(frozen=True)
class StreamAccounting:
    """One stream's share of the data direction, from the stream-labelled counters: the sender's
    ``datagrams_sent_total{stream}``, the proxy's ``proxy_stream_*{stream}`` and the receiver's
    ``datagrams_received_total{stream}``.

    ``sent == proxy_in``, ``proxy_in - sum(proxy_dropped) + proxy_duplicated == proxy_out`` and
    ``proxy_out - proxy_held == received``. The kernel's socket drops (a full receive queue) are
    not known per stream: a crossing holds when the stream's shortfall is between 0 and all the
    drops on that socket, so exactly when there were none; the whole is checked exactly by
    :class:`Accounting`. Datagrams a test injects count under the stream they name.
    """

    stream: int
    sent: int
    proxy_in: int
    proxy_dropped: dict[str, int]  # by reason
    proxy_duplicated: int
    proxy_out: int
    proxy_held: int  # copies of this stream the proxy still holds: 0 once traffic is over
    received: int
    socket_drops: dict[str, int]  # all streams', on the proxy's and the receiver's sockets
    identities: dict[str, bool] = field(default_factory=dict)

    @property
    def closes(self) -> bool:
        return all(self.identities.values())

    def minus(self, before: "StreamAccounting") -> "StreamAccounting":
        """The counts since ``before`` (taken while no daemon restarted in between)."""
        fields = {}
        for name, value in vars(self).items():
            if name == "identities":
                continue
            if isinstance(value, dict):
                old = getattr(before, name)
                fields[name] = {k: value.get(k, 0) - old.get(k, 0) for k in value.keys() | old}
            elif name in ("stream", "proxy_held"):
                fields[name] = value  # a key and a gauge
            else:
                fields[name] = value - getattr(before, name)
        return StreamAccounting.build(**fields)

    @staticmethod
    def build(**terms) -> "StreamAccounting":
        a = StreamAccounting(**terms)
        drops = a.socket_drops
        ident = {
            "sender -> proxy": 0 <= a.sent - a.proxy_in <= drops["proxy"],
            "proxy": a.proxy_in - sum(a.proxy_dropped.values()) + a.proxy_duplicated == a.proxy_out,
            "proxy -> receiver": 0 <= a.proxy_out - a.proxy_held - a.received <= drops["receiver"],
        }
        return StreamAccounting(**terms, identities=ident)


def forged_frames(
    count: int, height: int, width: int, codec: str = "cnn-c64", stream: int = 999
) -> list[bytes]:
    """One datagram of each of ``count`` frames that claim a ``height`` x ``width`` image: a
    valid header, descriptor and payload, with no reference behind them. What a hostile peer
    without the key can send to make a receiver decode (and save) a large image."""
    from semnet.core.packetize import packetize
    from semnet.core.wire import FrameDescriptor, PartitionSpec, QuantKind, QuantSpec, Scheme
    from semnet.models import zoo

    entry = zoo.entry(codec)
    desc = FrameDescriptor(
        codec_id=entry.codec_id,
        image_h=height,
        image_w=width,
        latent=zoo.load(codec).latent_shape(height, width),
        quant=QuantSpec(QuantKind.UNIFORM, 5, -1.0, 1.0),
        partition=PartitionSpec(Scheme.CHANNEL),
        interleave=True,
        seed=1,
        datagram_size=65000,
    )
    q = np.random.default_rng(0).integers(0, 32, size=desc.latent, dtype=np.uint16)
    return [packetize(q, desc, stream, frame, frame * 100)[0] for frame in range(count)]


def shared_zoos(sender: dict, receiver: dict) -> list[str]:
    """The zoos both daemons get: the sender's and the receiver's ``zoo:`` and the manifest a
    sender's ``codec:`` names, as absolute paths (the receiver finds the codec by its id)."""
    from semnet.models import zoopath

    items = [*zoopath.as_list(sender.get("zoo")), *zoopath.as_list(receiver.get("zoo"))]
    codec = sender.get("codec")
    if isinstance(codec, str) and zoopath.is_manifest(codec):
        items.append(codec)
    return list(dict.fromkeys(str(Path(p).expanduser().resolve()) for p in items))


class LocalTestbed:
    def __init__(
        self,
        workdir: str | Path,
        impair: str = "",
        seed: int = 1,
        sender: dict | None = None,
        receiver: dict | None = None,
        log_level: str = "warning",
        auth_key: bytes | None = None,
        senders: int = 1,
        proxy: dict | None = None,
    ) -> None:
        """``proxy``: more keys of the proxy's config (e.g. ``interface``). ``auth_key`` turns
        on authentication: the key goes to a file (mode 0600) that the sender's and the
        receiver's configs name, and the testbed signs its own requests. ``senders`` > 1 starts
        that many senders (``sender`` is the config of each), named
        ``sender0``.. with streams ``stream`` (1 unless ``sender`` sets it) and up."""
        if not 1 <= senders <= 256:
            raise SemnetError(f"senders: {senders} is not in 1..256")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = auth_key
        auth = {}
        if auth_key is not None:
            key_file = self.workdir / "auth.key"
            key_file.touch(mode=0o600)
            key_file.write_bytes(auth_key)
            auth = {"auth_key_file": str(key_file)}
        self.senders = ["sender"] if senders == 1 else [f"sender{i}" for i in range(senders)]
        self.names = ("receiver", "proxy", *self.senders)  # started in this order
        p = free_ports(4 + senders)
        addr = [f"127.0.0.1:{port}" for port in p]
        self.http = {"proxy": addr[1], "receiver": addr[2]}
        self.http.update(zip(self.senders, [addr[0], *addr[5:]], strict=True))
        self.udp = {"proxy": addr[3], "receiver": addr[4]}
        self.configs = {
            "receiver": {
                "listen": addr[4],
                "http": addr[2],
                "output": str(self.workdir / "received"),
                **auth,
                **(receiver or {}),
            },
            "proxy": {
                "listen": addr[3],
                "forward": addr[4],
                "http": addr[1],
                "impair": impair,
                "seed": seed,
                **auth,
                **(proxy or {}),
            },
        }
        first_stream = (sender or {}).get("stream", 1)
        self.streams: dict[str, int] = {}  # sender name -> its stream
        for i, name in enumerate(self.senders):
            self.configs[name] = {
                "http": self.http[name],
                "data_to": addr[3],
                "receiver_http": addr[2],
                "seed": seed,
                **auth,
                **(sender or {}),
            }
            if senders > 1:
                self.configs[name]["stream"] = first_stream + i
            self.streams[name] = first_stream + i
        zoos = shared_zoos(self.configs[self.senders[0]], self.configs["receiver"])
        for name in (*self.senders, "receiver") if zoos else ():
            self.configs[name]["zoo"] = zoos
        self.log_level = log_level
        self.procs: dict[str, subprocess.Popen] = {}
        self.injected = {"proxy": 0, "receiver": 0}

    def __enter__(self) -> "LocalTestbed":
        # the daemons start together: on 2 cores ten of them take longer than three
        deadline = time.monotonic() + START_TIMEOUT * max(1.0, len(self.names) / 3)
        try:
            for name in self.names:
                self.start(name)
            for name in self.names:
                self.wait_ready(name, max(START_TIMEOUT, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.configs[name]))
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "semnet",
                "--log-level",
                self.log_level,
                "sender" if name in self.senders else name,
                "--config",
                str(path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def wait_ready(self, name: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise SemnetError(
                    f"{name} exited with {self.procs[name].returncode}: {self.log(name)[-2000:]}"
                )
            try:
                self.metrics(name)
                return
            except SemnetError:
                time.sleep(0.1)
        raise SemnetError(f"{name} did not start within {timeout:.0f} s")

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, timeout: float = 15.0) -> int:
        proc = self.procs.pop(name, None)
        if proc is None:
            return 0
        return stop_process(proc, timeout)

    def close(self) -> None:
        """Stop every daemon: the senders together (all signalled, then each waited for), then
        the proxy, then the receiver."""
        for name in self.senders:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for name in reversed(self.names):
            self.stop(name)

    def kill(self, name: str) -> int:
        """SIGKILL a daemon: no shutdown code runs, as in a crash or an OOM kill."""
        proc = self.procs.pop(name)
        proc.kill()
        return proc.wait()

    def restart(self, name: str) -> None:
        """Kill the daemon if it runs, start it again on the same ports, wait until it serves."""
        if name in self.procs:
            self.kill(name)
        self.start(name)
        self.wait_ready(name)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def memory(self, name: str) -> dict[str, int]:
        """The daemon's resident memory now (``rss``) and at its peak (``hwm``), in bytes."""
        status = Path(f"/proc/{self.pid(name)}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {
            k: int(fields[v].split()[0]) * 1024 for k, v in (("rss", "VmRSS"), ("hwm", "VmHWM"))
        }

    # -- driving it ---------------------------------------------------------------------
    def send(
        self, image: np.ndarray, name: str = "image.png", via: str | None = None, **rate_point
    ) -> dict:
        """Send one image through sender ``via`` (the first by default); ``quality=N`` or
        ``bpp=B`` asks for another rate point."""
        address = self.http[via or self.senders[0]]
        return send_image(address, name, png_bytes(image), key=self.key, **rate_point)

    def inject(self, target: str, datagrams: Iterable[bytes], rate: float | None = None) -> int:
        """Send datagrams of the test's own to the proxy's or the receiver's UDP port, at most
        ``rate`` per second; counted, so :meth:`accounting` still closes. Returns how many."""
        host, port = self.udp[target].rsplit(":", 1)
        start, sent = time.monotonic(), 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for data in datagrams:
                if rate is not None:
                    ahead = sent / rate - (time.monotonic() - start)
                    if ahead > 0.001:
                        time.sleep(ahead)
                try:
                    s.sendto(data, (host, int(port)))
                except OSError:  # e.g. the kernel's send buffer is full: not sent, not counted
                    continue
                sent += 1
                self.injected[target] += 1
        return sent

    def set_impairment(self, spec: str) -> dict:
        body = json.dumps({"forward": spec}).encode()
        return request(
            f"http://{self.http['proxy']}/impairment", body, "PUT", timeout=10.0, key=self.key
        )

    def metrics(self, name: str) -> str:
        return request(f"http://{self.http[name]}/metrics", timeout=5.0)

    def sender_totals(self) -> dict[tuple, float]:
        """Every sender's samples together (each sender labels its counters with its stream)."""
        totals: dict[tuple, float] = {}
        for name in self.senders:
            for key, value in metric_totals(self.metrics(name)).items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def socket_drops(self) -> dict[str, int]:
        """The kernel's drops on the proxy's and the receiver's UDP sockets."""
        port = {name: int(self.udp[name].rsplit(":", 1)[1]) for name in ("proxy", "receiver")}
        return {name: udp_drops(port=p) or 0 for name, p in port.items()}

    def accounting(self, since: Accounting | None = None) -> Accounting:
        """The data direction's datagram accounting now (or since ``since``), all senders
        together; call it once no frame is in flight. ``closes`` says whether every identity
        holds exactly."""
        tx = self.sender_totals()
        px, rx = (metric_totals(self.metrics(n)) for n in ("proxy", "receiver"))
        fwd = {"direction": "forward"}
        now = Accounting.build(
            sent=int(metric(tx, "semnet_datagrams_sent_total")),
            injected=dict(self.injected),
            proxy_in=int(metric(px, "semnet_proxy_datagrams_in_total", **fwd)),
            proxy_dropped=by_label(px, "semnet_proxy_datagrams_dropped_total", "reason", **fwd),
            proxy_duplicated=int(metric(px, "semnet_proxy_datagrams_duplicated_total", **fwd)),
            proxy_out=int(metric(px, "semnet_proxy_datagrams_out_total", **fwd)),
            proxy_held=int(metric(px, "semnet_proxy_queue_datagrams", **fwd)),
            received=int(metric(rx, "semnet_datagrams_received_total")),
            accepted=int(metric(rx, "semnet_receiver_datagrams_accepted_total")),
            duplicates=int(metric(rx, "semnet_receiver_datagrams_duplicate_total")),
            late=int(metric(rx, "semnet_receiver_datagrams_late_total")),
            malformed=by_label(rx, "semnet_receiver_datagrams_malformed_total", "reason"),
            socket_drops=self.socket_drops(),
        )
        return now if since is None else now.minus(since)

    def stream_accounting(
        self, since: dict[int, StreamAccounting] | None = None
    ) -> dict[int, StreamAccounting]:
        """Each sender's stream's accounting now (or since ``since``), by stream; call it once
        no frame is in flight (every stream's ``proxy_held`` is then 0)."""
        tx = self.sender_totals()
        px, rx = (metric_totals(self.metrics(n)) for n in ("proxy", "receiver"))
        drops = self.socket_drops()
        out: dict[int, StreamAccounting] = {}
        for stream in self.streams.values():
            s = {"stream": str(stream)}
            now = StreamAccounting.build(
                stream=stream,
                sent=int(metric(tx, "semnet_datagrams_sent_total", **s)),
                proxy_in=int(metric(px, "semnet_proxy_stream_datagrams_in_total", **s)),
                proxy_dropped=by_label(
                    px, "semnet_proxy_stream_datagrams_dropped_total", "reason", **s
                ),
                proxy_duplicated=int(
                    metric(px, "semnet_proxy_stream_datagrams_duplicated_total", **s)
                ),
                proxy_out=int(metric(px, "semnet_proxy_stream_datagrams_out_total", **s)),
                proxy_held=int(metric(px, "semnet_proxy_stream_queue_datagrams", **s)),
                received=int(metric(rx, "semnet_datagrams_received_total", **s)),
                socket_drops=drops,
            )
            out[stream] = now if since is None else now.minus(since[stream])
        return out
