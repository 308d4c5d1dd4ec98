"""Impairment proxy: UDP in, netem-style impairment, UDP out — the network between the hosts.

Datagrams from any peer but ``forward`` go through the forward (data) impairment to
``forward``; datagrams from ``forward`` go through the reverse (feedback) impairment back to
the last peer. Each datagram's fate is decided on arrival by the pure-core model; delayed ones
wait in one timer heap. The impairment can be shown and changed while running over HTTP.
"""

import asyncio
import heapq
import itertools
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from semnet.core.impair import Impairment, format_spec, parse_spec, spec_from_mapping
from semnet.daemons.config import ProxyConfig
from semnet.daemons.metrics import LiveCounters, Sample
from semnet.daemons.net import drain, format_address, parse_address, udp_socket
from semnet.daemons.service import metrics_route, serve_http
from semnet.errors import ConfigError

log = logging.getLogger("semnet.proxy")
DIRECTIONS = ("forward", "reverse")


def spec_of(value):
    """A netem string or a YAML mapping -> ImpairSpec."""
    return spec_from_mapping(value) if isinstance(value, dict) else parse_spec(value)


@dataclass
class Direction:
    name: str
    impairment: Impairment
    changes: int = 0


class Proxy:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.forward_addr = parse_address(cfg.forward, "forward")
        self.dirs = {
            "forward": Direction("forward", Impairment(spec_of(cfg.impair), cfg.seed)),
            # a different stream for the reverse direction, still derived from the one seed
            "reverse": Direction("reverse", Impairment(spec_of(cfg.reverse), cfg.seed ^ 0x5EED)),
        }
        self.initial = {"forward": cfg.impair, "reverse": cfg.reverse}
        self.client: tuple | None = None
        self.heap: list = []
        self.tie = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.sock = None
        self.registry = CollectorRegistry()
        self.registry.register(LiveCounters(self.samples))

    def on_datagram(self, data: bytes, addr: tuple) -> None:
        if addr[:2] == self.forward_addr:
            direction, dest = self.dirs["reverse"], self.client
            if dest is None:
                return
        else:
            self.client = addr
            direction, dest = self.dirs["forward"], self.forward_addr
        now = time.monotonic()
        for e in direction.impairment.process(data, now):
            if e.release_at <= now:
                self.send(e.data, dest)
            else:
                heapq.heappush(self.heap, (e.release_at, next(self.tie), e.data, dest))
        if self.heap and self.timer is None:
            self.arm()

    def send(self, data: bytes, dest: tuple) -> None:
        try:
            self.sock.sendto(data, dest)
        except OSError as exc:
            log.debug("sendto %s failed: %s", dest, exc)

    def arm(self) -> None:
        delay = max(0.0, self.heap[0][0] - time.monotonic())
        self.timer = asyncio.get_running_loop().call_later(delay, self.release)

    def release(self) -> None:
        self.timer = None
        now = time.monotonic()
        while self.heap and self.heap[0][0] <= now:
            _, _, data, dest = heapq.heappop(self.heap)
            self.send(data, dest)
        if self.heap:
            self.arm()

    # -- run-time control ---------------------------------------------------------------
    def show(self) -> dict:
        return {
            name: {"spec": format_spec(d.impairment.spec), "changes": d.changes}
            for name, d in self.dirs.items()
        }

    def set(self, name: str, spec) -> None:
        d = self.dirs[name]
        d.impairment.set_spec(spec)
        d.changes += 1
        log.info("%s impairment set to %r", name, format_spec(d.impairment.spec))

    async def get_impairment(self, _: web.Request) -> web.Response:
        return web.json_response(self.show())

    async def put_impairment(self, request: web.Request) -> web.Response:
        """PUT /impairment {"forward": "<netem spec>", "reverse": ...}: applies from the next
        datagram; an invalid spec changes nothing and answers 400 naming the bad token."""
        try:
            body = await request.json()
            if not isinstance(body, dict) or not body or set(body) - set(DIRECTIONS):
                raise ConfigError(f"body must map some of {DIRECTIONS} to specs")
            specs = {name: spec_of(value) for name, value in body.items()}
        except (ValueError, ConfigError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        for name, spec in specs.items():
            self.set(name, spec)
        return web.json_response(self.show())

    async def reset_impairment(self, _: web.Request) -> web.Response:
        for name, value in self.initial.items():
            self.set(name, spec_of(value))
        return web.json_response(self.show())

    def samples(self):
        for name, d in self.dirs.items():
            c, lab = d.impairment.counters, (("direction", name),)
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
        yield Sample(
            "proxy_queue_datagrams",
            "Datagrams held for delay or rate",
            len(self.heap),
            kind="gauge",
        )


async def serve(cfg: ProxyConfig, stop: asyncio.Event) -> None:
    proxy = Proxy(cfg)
    proxy.sock = udp_socket(parse_address(cfg.listen, "listen"))
    loop = asyncio.get_running_loop()
    loop.add_reader(proxy.sock.fileno(), drain(proxy.sock, proxy.on_datagram))
    app = web.Application()
    app.add_routes(
        [
            metrics_route(proxy.registry),
            web.get("/impairment", proxy.get_impairment),
            web.put("/impairment", proxy.put_impairment),
            web.post("/impairment/reset", proxy.reset_impairment),
        ]
    )
    runner = await serve_http(app, *parse_address(cfg.http, "http"))
    log.info(
        "proxy: %s -> %s, forward %r, reverse %r, seed %d, http on %s",
        format_address(proxy.sock.getsockname()),
        cfg.forward,
        proxy.show()["forward"]["spec"],
        proxy.show()["reverse"]["spec"],
        cfg.seed,
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
        c = proxy.dirs["forward"].impairment.counters
        log.info("proxy stopped: %d in, %d out", c.received, c.emitted)
