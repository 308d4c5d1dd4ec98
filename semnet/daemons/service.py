"""What every daemon shares: one HTTP port (metrics + control), logging, clean shutdown."""

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from semnet.core.auth import HEADER, RequestVerifier
from semnet.daemons.metrics import LiveCounters, Sample
from semnet.daemons.net import new_event_loop

log = logging.getLogger("semnet")
OPEN_PATHS = frozenset({"/metrics"})  # Prometheus cannot sign; metrics are read-only


def control_app(key: bytes | None, registry: CollectorRegistry, **kwargs: Any) -> web.Application:
    """The daemon's HTTP app; with a key, every route but /metrics needs a signed request and
    refusals are exported as ``semnet_http_auth_rejected_total{reason}``."""
    if key is None:
        return web.Application(**kwargs)
    verifier = RequestVerifier(key)

    @web.middleware
    async def authenticate(request: web.Request, handler):
        if request.path not in OPEN_PATHS:
            body = await request.read()  # aiohttp keeps it for the handler
            header = request.headers.get(HEADER)
            reason = verifier.verify(header, request.method, request.raw_path, body, time.time())
            if reason:
                log.warning(
                    "refused %s %s from %s: %s",
                    request.method,
                    request.path,
                    request.remote,
                    reason,
                )
                raise web.HTTPUnauthorized(text=f"authentication failed: {reason}")
        return await handler(request)

    def samples():
        for reason, n in sorted(verifier.rejected.items()):
            yield Sample(
                "http_auth_rejected_total",
                "Control requests refused by authentication",
                n,
                (("reason", reason),),
            )

    registry.register(LiveCounters(samples))
    return web.Application(middlewares=[authenticate], **kwargs)


def metrics_route(registry: CollectorRegistry) -> web.RouteDef:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", metrics)


async def serve_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``; exit without a traceback."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(main(stop))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
