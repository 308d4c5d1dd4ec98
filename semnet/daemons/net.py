"""Addresses and UDP sockets for the daemons' hot paths."""

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from pathlib import Path

from semnet.errors import ConfigError

RECV_BUFFER = 8 * 2**20  # loopback bursts of a whole frame must not overflow the kernel queue
DRAIN_BATCH = 64  # datagrams read per wake-up (CONVENTIONS: a draining reader is the fast path)
MAX_UDP = 65535


def parse_address(text: str, key: str = "address") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); ConfigError naming ``key``."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: {text!r} is not host:port")
    return host, int(port)


def format_address(addr: tuple[str, int]) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_error(key: str, host: str, port: int, exc: OSError) -> ConfigError:
    """One line for an address a daemon cannot use: unknown host, port in use, no permission."""
    why = exc.strerror or str(exc) or type(exc).__name__
    return ConfigError(f"{key}: cannot listen on {format_address((host, port))} ({why})")


def udp_socket(
    bind: tuple[str, int] | None = None, family: int = socket.AF_INET, key: str = "listen"
) -> socket.socket:
    """A non-blocking UDP socket with large buffers, bound to ``bind`` when given; an address
    that cannot be bound is a ConfigError naming ``key``."""
    if bind is not None:
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # capped by net.core.rmem_max: best effort
            sock.setsockopt(socket.SOL_SOCKET, opt, RECV_BUFFER)
    if bind is not None:
        try:
            sock.bind(bind)
        except OSError as exc:
            sock.close()
            raise bind_error(key, *bind, exc) from None
    return sock


def udp_drops(*, inode: int | None = None, port: int | None = None) -> int | None:
    """Datagrams the kernel dropped on a UDP socket (its receive queue was full), found by inode
    or local port in /proc/net/udp{,6}: the loss no daemon counter can see. None if not found
    (not Linux, or no such socket)."""
    for name in ("udp", "udp6"):
        try:
            lines = Path("/proc/self/net", name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if inode is not None and int(cols[9]) != inode:
                continue
            if port is not None and int(cols[1].rpartition(":")[2], 16) != port:
                continue
            return int(cols[12])
    return None


def socket_inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def drain(sock: socket.socket, handle: Callable[[bytes, tuple], None]) -> Callable[[], None]:
    """A reader callback for ``loop.add_reader``: reads up to DRAIN_BATCH datagrams per wake-up."""
    recvfrom = sock.recvfrom

    def on_readable() -> None:
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = recvfrom(MAX_UDP)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable surfaced on the socket: keep serving
                continue
            handle(data, addr)

    return on_readable


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (about 4x the datagram rate of the default loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
