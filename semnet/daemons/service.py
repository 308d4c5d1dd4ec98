"""What every daemon shares: one HTTP port (metrics + control), logging, clean shutdown."""

import asyncio
import logging
import os
import platform
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Info,
    ProcessCollector,
    generate_latest,
)

import semnet
from semnet.core.auth import HEADER, REQUEST_REFUSALS, RequestVerifier
from semnet.daemons.metrics import LiveCounters, by_reason
from semnet.daemons.net import bind_error, new_event_loop
from semnet.daemons.throttle import LogThrottle

log = logging.getLogger("semnet")
# Prometheus and liveness probes cannot sign; these answers are read-only
OPEN_PATHS = frozenset({"/metrics", "/health", "/version"})


def daemon_registry(daemon: str) -> CollectorRegistry:
    """A daemon's metrics registry: its own counters join the process's (CPU seconds, memory,
    open files) and ``semnet_build_info``, so a dashboard can tell a restart or an upgrade."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Info("semnet_build", "The semnet build this daemon runs", registry=registry).info(
        {"version": semnet.__version__, "python": platform.python_version(), "daemon": daemon}
    )
    return registry


def control_app(
    key: bytes | None, registry: CollectorRegistry, *, client_max_size: int = 2**20
) -> web.Application:
    """The daemon's HTTP app, with ``/health`` and ``/version`` (open, for probes). A body
    longer than ``client_max_size`` is refused with 413 from its Content-Length, unread. With a
    key, every route but the open ones needs a signed request; the header is judged before the
    body is read, and refusals are exported as ``semnet_http_auth_rejected_total{reason}``."""
    middlewares = [bounded_body(client_max_size)]
    if key is not None:
        verifier = RequestVerifier(key)
        middlewares.append(authenticate(verifier))
        registry.register(LiveCounters(partial(auth_samples, verifier)))
    app = web.Application(middlewares=middlewares, client_max_size=client_max_size)
    app.add_routes([web.get("/health", health), web.get("/version", version)])
    return app


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def version(_: web.Request) -> web.Response:
    return web.json_response({"name": "semnet", "version": semnet.__version__})


def bounded_body(limit: int):
    @web.middleware
    async def middleware(request: web.Request, handler):
        length = request.content_length
        if length is not None and length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
        return await handler(request)

    return middleware


def authenticate(verifier: RequestVerifier):
    warnings = LogThrottle(log)

    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in OPEN_PATHS:
            return await handler(request)
        header, now = request.headers.get(HEADER), time.time()
        reason = verifier.verify_head(header, now)
        if not reason:
            body = await request.read()  # bounded by client_max_size; aiohttp keeps it
            reason = verifier.verify(header, request.method, request.raw_path, body, now)
        if reason:
            warnings.warning(
                reason,
                "refused %s %s from %s: %s",
                request.method,
                request.path,
                request.remote,
                reason,
            )
            raise web.HTTPUnauthorized(text=f"authentication failed: {reason}")
        return await handler(request)

    return middleware


def auth_samples(verifier: RequestVerifier):
    yield from by_reason(
        "http_auth_rejected_total",
        "Control requests refused by authentication",
        verifier.rejected,
        REQUEST_REFUSALS,
    )


def metrics_route(registry: CollectorRegistry) -> web.RouteDef:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return web.get("/metrics", metrics)


async def serve_http(
    app: web.Application, host: str, port: int, key: str = "http"
) -> web.AppRunner:
    """Serve ``app``; an address that cannot be bound is a ConfigError naming ``key``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise bind_error(key, host, port, exc) from None
    return runner


def forget_signals() -> None:
    """In a child forked without exec: drop the daemon's signal handlers and the loop's wake-up
    fd, which the child shares with the daemon. OpenVINO's converter forks a telemetry helper
    and SIGTERMs it when it hangs (no network, a loaded machine); without this, that signal
    reached the daemon's loop through the shared fd and stopped the daemon, exit 0, at start."""
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
    except ValueError:  # not the main thread of the main interpreter: nothing was inherited
        pass


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` until SIGINT or SIGTERM sets ``stop``; exit without a traceback."""
    os.register_at_fork(after_in_child=forget_signals)
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
