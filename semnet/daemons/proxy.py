"""Impairment proxy: UDP in, netem-style impairment, UDP out — the network between the hosts.

Datagrams from any peer but ``forward`` go through the forward (data) impairment to
``forward``; datagrams from ``forward`` go through the reverse (feedback) impairment back to
the peer that sent the stream they name (a receiver report names its stream), else to the last
peer. Each datagram's fate is decided on arrival by the pure-core model; delayed ones wait in
one timer heap. The forward direction can record its fates to a trace or replay one.

Every stream through the forward direction shares its one model: one ``rate`` (one departure
schedule), one ``limit`` (one held queue), one loss process — one bottleneck, as one netem
qdisc on a link is for every flow through it. What each stream got of it is counted apart
(``semnet_proxy_stream_*{stream}``) by the stream field of the datagram header, for the first
MAX_STREAMS streams; anything else (not a data datagram, or a stream past those) is ``other``.

The impairment can be shown and changed while running over HTTP (JSON in and out, errors too),
and so can the bit interface a ``link ... errors bits`` stage protects (paper 003: the access
node learns the source's interface over its control API, never from shared code).

Hot-path tallies (loss bursts, added delay) are plain ints read by the collector at scrape
time, as the core's counters are: no Prometheus call per datagram.
"""

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import socket
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from time import monotonic
from typing import TextIO

from aiohttp import web
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from semnet.core import feedback
from semnet.core import interface as bit_interface
from semnet.core.impair import (
    DROP_REASONS,
    Emission,
    Fate,
    FateRecorder,
    Impairment,
    ImpairModel,
    ImpairSpec,
    ReplayImpairment,
    format_spec,
    load_trace,
    parse_spec,
    patch_spec,
    spec_from_mapping,
)
from semnet.core.wire import MAGIC, VERSION, ends_frame
from semnet.daemons.config import ProxyConfig
from semnet.daemons.metrics import LiveCounters, Sample
from semnet.daemons.net import drain, format_address, parse_address, udp_socket
from semnet.daemons.service import control_app, daemon_registry, metrics_route, serve_http
from semnet.errors import ConfigError

log = logging.getLogger("semnet.proxy")
DIRECTIONS = ("forward", "reverse")
REVERSE_SEED_MASK = 0x5EED  # the reverse stream differs from the forward one, same config seed
# Upper edges: loss burst lengths (datagrams) and added delay (seconds; netem delays 0..2 s).
BURST_EDGES = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
SLOT_WAIT = 0.05  # seconds a link slot waits at most for more datagrams (16 arrive in ~1 ms)
DELAY_EDGES = (0.0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
MAX_BODY = 64 * 1024  # bytes of a control request: a spec is a few hundred
MAX_STREAMS = 64  # streams counted (and their reports routed) apart, as a receiver tracks 64
DATA_PREFIX = bytes((MAGIC, VERSION))  # a data datagram (semnet.core.wire)
REPORT_MAGIC = bytes((feedback.MAGIC,))  # a receiver report (semnet.core.feedback)
STREAM = slice(4, 6)  # the u16 stream field, at the same offset in both
OTHER = b""  # the tally of datagrams that name no counted stream


def spec_of(value: str | dict, key: str, base: ImpairSpec | None = None) -> ImpairSpec:
    """A netem string or a YAML mapping -> ImpairSpec, merged into ``base`` when given (PATCH);
    errors name ``key`` and the bad token."""
    try:
        if base is not None:
            return patch_spec(base, value)
        return spec_from_mapping(value) if isinstance(value, dict) else parse_spec(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    except RecursionError:  # a value nested too deeply to print in an error
        raise ConfigError(f"{key}: nested too deeply") from None


def fresh(
    spec: ImpairSpec, seed: int, interface: bit_interface.Interface | None = None
) -> Impairment:
    """A new model; the spec's own ``seed N`` wins over the configured seed."""
    return Impairment(spec, seed if spec.seed is None else spec.seed, interface)


@dataclass(eq=False, slots=True)
class StreamTally:
    """One forward stream's datagrams through the shared model: ``received`` in, ``emitted``
    copies out (``held`` of them still wait in the timer heap), ``duplicated`` extra copies,
    ``dropped`` by reason; ``received - sum(dropped) + duplicated == emitted``. ``peer`` is
    where the stream's datagrams last came from: its receiver reports go back there."""

    label: str
    peer: tuple | None = None
    received: int = 0
    emitted: int = 0
    duplicated: int = 0
    held: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


@dataclass(eq=False)
class Direction:
    """One direction's model and hot-path tallies.

    ``delays[i]`` counts delayed copies per DELAY_EDGES bucket (+Inf last); copies sent at once
    are ``emitted - sum(delays)``, so the undelayed path adds no work. ``bursts`` counts ended
    runs of consecutive ``drop:loss`` per BURST_EDGES bucket.
    """

    seed: int  # for specs without their own seed
    # what reset restores, from its start, given the interface a bit-error link protects
    configured: Callable[[bit_interface.Interface | None], ImpairModel]
    replay: str | None = None
    interface: bit_interface.Interface | None = None  # for a bit-error link stage
    recorder: FateRecorder | None = None
    changes: int = 0
    model: ImpairModel = field(init=False)
    pending: int = 0  # copies of this direction in the proxy's timer heap
    loss_seen: int = 0  # drop:loss count at the last drop: tells loss from limit drops
    run: int = 0  # the loss burst in progress
    bursts: list[int] = field(default_factory=lambda: [0] * (len(BURST_EDGES) + 1))
    burst_sum: int = 0
    delays: list[int] = field(default_factory=lambda: [0] * (len(DELAY_EDGES) + 1))
    delay_sum: float = 0.0

    def __post_init__(self) -> None:
        self.model = self.configured(self.interface)

    def swap(self, model: ImpairModel) -> None:
        """Replace the model; counters carry over so the exported totals never go back, and the
        held queue too, so copies still in flight count against the new model's limit."""
        model.counters, model.held = self.model.counters, self.model.held
        self.model = model

    def set(self, spec: ImpairSpec) -> None:
        """Like ``tc qdisc change``; a spec with ``seed N`` starts a fresh model from it."""
        if spec.seed is None and isinstance(self.model, Impairment):
            self.model.set_spec(spec)
        else:
            self.swap(fresh(spec, self.seed, self.interface))
        self.changes += 1

    def reset(self) -> None:
        """Back to the configured model as at start (same seed: the same fates again)."""
        self.swap(self.configured(self.interface))
        self.changes += 1

    def set_interface(self, interface: bit_interface.Interface) -> None:
        """The interface this direction's (present and later) bit-error stage protects."""
        self.interface = interface
        if isinstance(self.model, Impairment):
            self.model.set_interface(interface)

    def dropped(self) -> None:
        n = self.model.counters.dropped_by_reason["loss"]
        if n != self.loss_seen:
            self.loss_seen = n
            self.run += 1
        elif self.run:  # a limit drop ends a run of loss drops
            self.end_burst()

    def end_burst(self) -> None:
        run, self.run = self.run, 0
        self.bursts[bisect_left(BURST_EDGES, run)] += 1
        self.burst_sum += run

    def record(self) -> None:
        fate = self.model.last_fate
        ordinal = self.model.counters.received - 1  # a swapped-in model numbers from 0 again
        if fate.ordinal != ordinal:
            fate = dataclasses.replace(fate, ordinal=ordinal)
        self.recorder.record(fate)

    def show(self) -> dict:
        replaying = isinstance(self.model, ReplayImpairment)
        return {
            "spec": None if replaying else format_spec(self.model.spec),
            "replay": self.replay if replaying else None,
            "changes": self.changes,
        }


def read_body(data: bytes | str) -> dict[str, str | dict]:
    """A PUT or PATCH /impairment body -> {direction: netem string or mapping}."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ConfigError(f"body is not JSON ({exc})") from None
    if not isinstance(body, dict) or not body or set(body) - set(DIRECTIONS):
        raise ConfigError(f"body must map some of {DIRECTIONS} to specs")
    for name, value in body.items():
        if not isinstance(value, str | dict):
            raise ConfigError(f"{name}: expected a netem string or a mapping")
    return body


def specs_from_body(data: bytes | str) -> dict[str, ImpairSpec]:
    """A PUT /impairment body -> {direction: spec}; every spec is checked before any applies."""
    return {name: spec_of(value, name) for name, value in read_body(data).items()}


def resolve(text: str, key: str, listen: str) -> tuple[str, int]:
    """host:port -> the numeric address recvfrom reports, so replies are recognised; in the
    listening socket's family (the one udp_socket picks)."""
    host, port = parse_address(text, key)
    family = socket.AF_INET6 if ":" in parse_address(listen)[0] else socket.AF_INET
    try:
        return socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0][4][:2]
    except OSError as exc:
        raise ConfigError(f"{key}: cannot resolve {host!r} ({exc})") from None


class Proxy:
    """The two directions, the timer heap for delayed copies, and the HTTP handlers."""

    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.forward_addr = resolve(cfg.forward, "forward", cfg.listen)
        forward, reverse = spec_of(cfg.impair, "impair"), spec_of(cfg.reverse, "reverse")
        iface = read_interface(cfg.interface)
        if cfg.replay:
            configured = partial(replayed, read_trace(cfg.replay), forward.limit)
        else:
            configured = partial(fresh_or_refused, forward, cfg.seed, key="impair")
        reverse_seed = cfg.seed ^ REVERSE_SEED_MASK
        self.forward = Direction(cfg.seed, configured, cfg.replay, iface)
        refused = partial(fresh_or_refused, reverse, reverse_seed, key="reverse")
        self.reverse = Direction(reverse_seed, refused, interface=iface)
        self.dirs = {"forward": self.forward, "reverse": self.reverse}
        self.client: tuple | None = None
        self.streams: dict[bytes, StreamTally] = {OTHER: StreamTally("other")}
        self.heap: list = []
        self.tie = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.due = 0.0  # release time the timer is armed for
        self.sock: socket.socket | None = None
        self.slot: list[bytes] = []  # forward datagrams gathered for the link's next slot
        self.slot_timer: asyncio.TimerHandle | None = None
        self.registry = daemon_registry("proxy")
        self.registry.register(LiveCounters(self.samples))
        self.registry.register(Histograms(self))

    def on_datagram(self, data: bytes, addr: tuple) -> None:
        if addr[1] == self.forward_addr[1] and addr[0] == self.forward_addr[0]:
            d, dest, t = self.reverse, self.return_address(data), None
            if dest is None:
                return
        else:
            self.client = addr
            d, dest = self.forward, self.forward_addr
            t = self.tally(data)
            t.peer = addr
            link = d.model.link  # a packet-error link (a bit-error one is d.model.node)
            if link is not None:
                self.gather(data, link.subcarriers)
                return
        self.pass_on(d, dest, data, t)

    def tally(self, data: bytes) -> StreamTally:
        """The tally of the stream a forward datagram names (``other`` if none is counted)."""
        key = data[STREAM] if data[:2] == DATA_PREFIX else OTHER
        t = self.streams.get(key)
        if t is None:
            if len(key) != 2 or len(self.streams) > MAX_STREAMS:
                return self.streams[OTHER]
            t = self.streams[key] = StreamTally(str(int.from_bytes(key, "big")))
        return t

    def return_address(self, data: bytes) -> tuple | None:
        """Where a reverse datagram goes: to the peer of the stream a receiver report names,
        else (a stream not counted apart, or not a report) to the last peer."""
        key = data[STREAM]
        if data[:1] == REPORT_MAGIC and len(key) == 2:
            t = self.streams.get(key)
            if t is not None and t.peer is not None:
                return t.peer
        return self.client

    def gather(self, data: bytes, subcarriers: int) -> None:
        """A wireless link sends B datagrams per slot, powered by their importance: hold the
        forward datagrams until B have arrived or their frame's last one has (a short slot), then
        queue the slot and pass them on — the slots the offline chain makes. SLOT_WAIT after the
        first, a slot goes anyway (its frame's last datagram was lost before the proxy)."""
        self.slot.append(data)
        if len(self.slot) >= subcarriers or ends_frame(data):
            self.flush_slot()
        elif self.slot_timer is None:
            self.slot_timer = asyncio.get_running_loop().call_later(SLOT_WAIT, self.flush_slot)

    def flush_slot(self) -> None:
        if self.slot_timer is not None:
            self.slot_timer.cancel()
            self.slot_timer = None
        slot, self.slot = self.slot, []
        if not slot:
            return
        self.forward.model.feed_frame(slot)  # a model without a link (changed meanwhile) ignores it
        for data in slot:
            self.pass_on(self.forward, self.forward_addr, data, self.tally(data))

    def pass_on(self, d: Direction, dest: tuple, data: bytes, t: StreamTally | None) -> None:
        """One datagram through the direction's model: dropped, sent now, or held; counted in
        its stream's tally ``t`` (forward only)."""
        now = monotonic()
        emissions = d.model.process(data, now)
        if d.recorder is not None:
            d.record()
        if t is not None:
            t.received += 1
            t.emitted += len(emissions)
        if not emissions:
            d.dropped()
            if t is not None:
                reason = d.model.last_fate.action.removeprefix("drop:")
                t.dropped[reason] = t.dropped.get(reason, 0) + 1
            return
        if d.run:
            d.end_burst()
        if t is not None and len(emissions) == 2:
            t.duplicated += 1
        for e in emissions:
            if e.release_at <= now:
                try:  # inlined send(): this is the per-datagram path
                    self.sock.sendto(e.data, dest)
                except OSError as exc:
                    log.debug("sendto %s failed: %s", dest, exc)
            else:
                self.hold(d, e, now, dest, t)

    def hold(
        self, d: Direction, e: Emission, now: float, dest: tuple, t: StreamTally | None
    ) -> None:
        """Queue a delayed copy for the timer, counting its added delay."""
        delay = e.release_at - now
        d.delays[bisect_left(DELAY_EDGES, delay)] += 1
        d.delay_sum += delay
        d.pending += 1
        if t is not None:
            t.held += 1
        heapq.heappush(self.heap, (e.release_at, next(self.tie), e.data, dest, d, t))
        if self.timer is None or e.release_at < self.due:
            self.arm()

    def send(self, data: bytes, dest: tuple) -> None:
        try:
            self.sock.sendto(data, dest)
        except OSError as exc:
            log.debug("sendto %s failed: %s", dest, exc)

    def arm(self) -> None:
        """(Re)arm the timer for the earliest held copy."""
        if self.timer is not None:
            self.timer.cancel()
        self.due = self.heap[0][0]
        delay = max(0.0, self.due - monotonic())
        self.timer = asyncio.get_running_loop().call_later(delay, self.release)

    def release(self) -> None:
        self.timer = None
        now = monotonic()
        while self.heap and self.heap[0][0] <= now:
            _, _, data, dest, d, t = heapq.heappop(self.heap)
            d.pending -= 1
            if t is not None:
                t.held -= 1
            self.send(data, dest)
        if self.heap:
            self.arm()

    # -- run-time control ---------------------------------------------------------------
    def show(self) -> dict:
        return {name: d.show() for name, d in self.dirs.items()}

    async def get_impairment(self, _: web.Request) -> web.Response:
        return web.json_response(self.show())

    async def put_impairment(self, request: web.Request) -> web.Response:
        """PUT /impairment {"forward": "<netem spec>", "reverse": ...}: each direction named gets
        exactly that spec, from the next datagram; an invalid spec changes nothing and answers
        400 naming the bad token (json_errors)."""
        return self.apply(specs_from_body(await request.read()))

    async def patch_impairment(self, request: web.Request) -> web.Response:
        """PATCH /impairment: like PUT, but each spec only replaces the options it names."""
        body = read_body(await request.read())
        return self.apply({name: self.patched(name, value) for name, value in body.items()})

    def patched(self, name: str, value: str | dict) -> ImpairSpec:
        model = self.dirs[name].model
        if not isinstance(model, Impairment):
            raise ConfigError(f"{name}: a replay has no spec to patch; PUT a whole one")
        return spec_of(value, name, model.spec)

    def apply(self, specs: dict[str, ImpairSpec]) -> web.Response:
        for name, spec in specs.items():
            self.dirs[name].set(spec)
            log.info("%s impairment set to %r", name, format_spec(spec))
        return web.json_response(self.show())

    async def get_interface(self, _: web.Request) -> web.Response:
        return web.json_response(self.show_interface())

    async def put_interface(self, request: web.Request) -> web.Response:
        """PUT /interface {semnet-interface/1}: the interface both directions' bit-error stages
        protect, from the next datagram; a bad one changes nothing and answers 400."""
        iface = parse_interface(await request.read())
        for d in self.dirs.values():
            d.set_interface(iface)
        log.info("interface set: %d channels x %d bits", iface.channels, iface.bits)
        return web.json_response(self.show_interface())

    def show_interface(self) -> dict:
        """The interface and, per direction with a bit-error stage, what the node allocated."""
        iface = self.forward.interface
        state: dict = {"interface": None if iface is None else iface.as_dict()}
        for name, d in self.dirs.items():
            node = d.model.node
            if node is not None:
                a = node.allocation
                state[name] = {"class_flip": a.probs.tolist(), "class_power": a.powers.tolist()}
        return state

    async def reset_impairment(self, _: web.Request) -> web.Response:
        for d in self.dirs.values():
            d.reset()
        log.info("impairment reset to the configured one")
        return web.json_response(self.show())

    def samples(self):
        for name, d in self.dirs.items():
            c, lab = d.model.counters, (("direction", name),)
            yield Sample("proxy_datagrams_in_total", "Datagrams into the proxy", c.received, lab)
            yield Sample("proxy_datagrams_out_total", "Datagrams out of the proxy", c.emitted, lab)
            for reason, n in sorted(c.dropped_by_reason.items()):
                yield Sample(
                    "proxy_datagrams_dropped_total",
                    "Datagrams dropped, by reason",
                    n,
                    (*lab, ("reason", reason)),
                )
            yield Sample("proxy_datagrams_duplicated_total", "Extra copies sent", c.duplicated, lab)
            yield Sample(
                "proxy_datagrams_corrupted_total", "Datagrams with a bit flipped", c.corrupted, lab
            )
            yield Sample(
                "proxy_datagrams_reordered_total",
                "Datagrams sent ahead of the queue",
                c.reordered,
                lab,
            )
            yield Sample(
                "proxy_impairment_changes_total", "Run-time impairment changes", d.changes, lab
            )
            for cls, n in sorted(c.class_bits.items()):
                clab = (*lab, ("class", str(cls)))
                yield Sample(
                    "proxy_link_bits_total", "Payload bits over a bit-error link, by class", n, clab
                )
                yield Sample(
                    "proxy_link_bit_flips_total",
                    "Payload bits a bit-error link flipped, by importance class",
                    c.class_flips.get(cls, 0),
                    clab,
                )
            yield Sample(
                "proxy_queue_datagrams",
                "Copies held for delay, rate or slot (netem's qlen, bounded by limit)",
                d.pending,
                lab,
                kind="gauge",
            )
        yield Sample(
            "proxy_pending_datagrams",
            "Copies waiting in the send timer heap, both directions",
            len(self.heap),
            kind="gauge",
        )
        yield from self.stream_samples()

    def stream_samples(self):
        """The forward direction per stream: what each stream got of the shared bottleneck."""
        reasons = sorted(self.forward.model.counters.dropped_by_reason)
        tallies = sorted(self.streams.values(), key=lambda t: (len(t.label), t.label))
        for t in tallies:
            lab = (("stream", t.label),)
            yield Sample(
                "proxy_stream_datagrams_in_total",
                "Forward datagrams into the proxy, by the stream their header names "
                "(other: not a data datagram, or past the streams counted apart)",
                t.received,
                lab,
            )
            yield Sample(
                "proxy_stream_datagrams_out_total",
                "Forward copies out of the proxy (sent or held), by stream",
                t.emitted,
                lab,
            )
            for reason in sorted({*reasons, *t.dropped}):
                yield Sample(
                    "proxy_stream_datagrams_dropped_total",
                    "Forward datagrams dropped, by stream and reason",
                    t.dropped.get(reason, 0),
                    (*lab, ("reason", reason)),
                )
            yield Sample(
                "proxy_stream_datagrams_duplicated_total",
                "Extra forward copies sent, by stream",
                t.duplicated,
                lab,
            )
            yield Sample(
                "proxy_stream_queue_datagrams",
                "Forward copies of the stream held for delay, rate or slot (the queue is shared)",
                t.held,
                lab,
                kind="gauge",
            )


class Histograms(Collector):
    """Loss-burst and added-delay histograms built at scrape time from the plain tallies."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def collect(self):
        bursts = HistogramMetricFamily(
            "semnet_proxy_loss_burst_datagrams",
            "Length of runs of consecutive loss drops, counted when a run ends",
            labels=["direction"],
        )
        delays = HistogramMetricFamily(
            "semnet_proxy_added_delay_seconds",
            "Delay added to each copy sent (release time - arrival time)",
            labels=["direction"],
        )
        snr = HistogramMetricFamily(
            "semnet_proxy_link_snr_db",
            "Received SNR of each datagram on the wireless link (dB; unpowered at -50)",
            labels=["direction"],
        )
        for name, d in self.proxy.dirs.items():
            bursts.add_metric([name], cumulative(BURST_EDGES, d.bursts), d.burst_sum)
            counts = list(d.delays)
            counts[0] += d.model.counters.emitted - sum(counts)  # copies sent at once
            delays.add_metric([name], cumulative(DELAY_EDGES, counts), d.delay_sum)
            link = d.model.link
            if link is not None:
                from semnet.core.wireless import SNR_EDGES_DB  # numpy only with a link

                # no _sum: OpenMetrics forbids it on histograms with negative buckets
                snr.add_metric([name], cumulative(SNR_EDGES_DB, link.snr_counts), None)
        yield bursts
        yield delays
        yield snr


def error_response(status: int, message: str, headers=None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error answers ``{"error": "...", "status": N}``, aiohttp's own (404, 405, 413, the
    authentication's 401) included; a ConfigError is the caller's mistake: 400."""
    try:
        return await handler(request)
    except ConfigError as exc:
        return error_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = (exc.text or exc.reason).removeprefix(f"{exc.status}: ")
        kept = {k: v for k, v in exc.headers.items() if k not in ("Content-Type", "Content-Length")}
        return error_response(exc.status, message, kept)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (logged by the proxy)")


def cumulative(edges: tuple, counts: list[int]) -> list[tuple[str, int]]:
    """Per-bucket counts (+Inf last) -> Prometheus (le, cumulative count) pairs."""
    return list(zip([*map(str, edges), "+Inf"], itertools.accumulate(counts), strict=True))


def replayed(fates: list[Fate], limit: int, _: bit_interface.Interface | None) -> ImpairModel:
    """The replay a forward direction restarts from (a trace has no bit-error stage)."""
    return ReplayImpairment(fates, limit=limit)


def fresh_or_refused(
    spec: ImpairSpec, seed: int, iface: bit_interface.Interface | None, key: str
) -> Impairment:
    """The configured model; a bit-error link without an interface is refused at start."""
    try:
        return fresh(spec, seed, iface)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def read_interface(path: str | None) -> bit_interface.Interface | None:
    if path is None:
        return None
    try:
        return bit_interface.load(path)
    except ConfigError as exc:
        raise ConfigError(f"interface: {exc}") from None


def parse_interface(body: bytes) -> bit_interface.Interface:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"interface: body is not JSON ({exc})") from None
    return bit_interface.from_dict(data)


def read_trace(path: str) -> list[Fate]:
    """The replay trace, with errors that name the key and the file."""
    try:
        fates = load_trace(path)
    except OSError as exc:
        raise ConfigError(f"replay: cannot read {path} ({exc.strerror})") from None
    except ConfigError as exc:
        raise ConfigError(f"replay: {path}: {exc}") from None
    if not fates:
        raise ConfigError(f"replay: {path}: no records")
    return fates


def open_record(path: str | None) -> contextlib.AbstractContextManager[TextIO | None]:
    if path is None:
        return contextlib.nullcontext()
    try:
        return open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by serve's with)
    except OSError as exc:
        raise ConfigError(f"record: cannot write {path} ({exc.strerror})") from None


async def serve(cfg: ProxyConfig, stop: asyncio.Event) -> None:
    proxy = Proxy(cfg)  # a bad spec or trace fails here, before the record file is created
    with open_record(cfg.record) as stream:
        if stream is not None:
            proxy.forward.recorder = FateRecorder(stream)
        await run_proxy(proxy, stop)


async def run_proxy(proxy: Proxy, stop: asyncio.Event) -> None:
    cfg = proxy.cfg
    proxy.sock = udp_socket(parse_address(cfg.listen, "listen"))
    loop = asyncio.get_running_loop()
    loop.add_reader(proxy.sock.fileno(), drain(proxy.sock, proxy.on_datagram))
    # a body over MAX_BODY: 413 from its Content-Length, unread (or once read that far)
    app = control_app(cfg.load_auth_key(), proxy.registry, client_max_size=MAX_BODY)
    app.middlewares.insert(0, json_errors)  # outermost: the size and auth refusals too
    app.add_routes(
        [
            metrics_route(proxy.registry),
            web.get("/impairment", proxy.get_impairment),
            web.put("/impairment", proxy.put_impairment),
            web.patch("/impairment", proxy.patch_impairment),
            web.post("/impairment/reset", proxy.reset_impairment),
            web.get("/interface", proxy.get_interface),
            web.put("/interface", proxy.put_interface),
        ]
    )
    runner = await serve_http(app, *parse_address(cfg.http, "http"))
    state = proxy.show()
    log.info(
        "proxy: %s -> %s, forward %r, reverse %r, seed %d, record %s, http on %s",
        format_address(proxy.sock.getsockname()),
        cfg.forward,
        f"replay {cfg.replay}" if cfg.replay else state["forward"]["spec"],
        state["reverse"]["spec"],
        cfg.seed,
        cfg.record or "off",
        cfg.http,
    )
    try:
        await stop.wait()
    finally:
        loop.remove_reader(proxy.sock.fileno())
        if proxy.timer:
            proxy.timer.cancel()
        proxy.release()
        proxy.sock.close()
        await runner.cleanup()
        c = proxy.forward.model.counters
        log.info("proxy stopped: %d in, %d out", c.received, c.emitted)
