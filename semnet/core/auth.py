"""Authentication: per-datagram HMAC tags, an anti-replay window, signed control requests.

Sans-IO like the rest of the core: keys are bytes handed in, clocks are values handed in.

- A datagram tag is HMAC-SHA256 truncated to 16 bytes (RFC 2104 §5 allows truncation to half
  the output; 128 bits is what SRTP and IPsec use), over every byte before it.
- The replay window is IPsec's (RFC 4303 §3.4.3): a bitmap of the last ``size`` sequence
  numbers below the highest authentic one. Authentic datagrams can move it forward by any
  amount, never back, so a datagram older than the window is a replay.
- A control request carries ``X-Semnet-Auth: <unix time>:<hex HMAC-SHA256>`` over its method,
  path, time and body; a verifier accepts it once, within ``window`` seconds of its clock.
"""

from __future__ import annotations

import enum
import hmac
from collections import OrderedDict

from semnet.core.seqnum import seq_add, seq_diff
from semnet.errors import ConfigError

TAG_SIZE = 16
MIN_KEY = 16  # bytes: a shorter key would be the weakest link of a 128-bit tag
HEADER = "X-Semnet-Auth"
REQUEST_WINDOW = 30.0  # seconds of clock difference tolerated between hosts
MAX_SEEN = 4096  # signatures remembered to refuse a request replayed within the window


def check_key(key: bytes, where: str) -> bytes:
    """Validate a key's length; the message names ``where`` and the length, never the key."""
    if len(key) < MIN_KEY:
        raise ConfigError(f"{where}: key is {len(key)} bytes, need at least {MIN_KEY}")
    return key


def tag(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """The truncated HMAC-SHA256 of ``data``."""
    return hmac.digest(key, data, "sha256")[:TAG_SIZE]


def tag_ok(key: bytes, data: bytes | memoryview, received: bytes | memoryview) -> bool:
    """Constant-time check of a datagram tag."""
    return hmac.compare_digest(tag(key, data), bytes(received))


class Replay(enum.Enum):
    NEW = "new"  # first arrival: accept
    DUPLICATE = "duplicate"  # already seen within the window: a network copy or a replay
    OLD = "old"  # older than the window: cannot be vouched for, so a replay


class ReplayWindow:
    """Per-stream anti-replay state, fed only sequence numbers of authentic datagrams."""

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ConfigError(f"replay window: must be >= 1, got {size}")
        self.size = size
        self._mask = (1 << size) - 1
        self.highest: int | None = None
        self._seen = 0  # bit i set: highest - i arrived

    def check(self, seq: int) -> Replay:
        """Classify ``seq`` and, when new, mark it seen."""
        if self.highest is None:
            self.highest, self._seen = seq, 1
            return Replay.NEW
        d = seq_diff(seq, self.highest)
        if d > 0:  # a jump past the window clears it (never shift by up to 2**31 bits)
            self.highest = seq
            self._seen = ((self._seen << d) | 1) & self._mask if d < self.size else 1
            return Replay.NEW
        if -d >= self.size:
            return Replay.OLD
        if self._seen >> -d & 1:
            return Replay.DUPLICATE
        self._seen |= 1 << -d
        return Replay.NEW

    def restart(self, first: int) -> None:
        """Accept from ``first`` on, e.g. after a sender restart announced on a signed request."""
        self.highest, self._seen = seq_add(first, -1), 0


def request_mac(key: bytes, method: str, path: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC of one control request; ``path`` includes the query string."""
    head = f"{method.upper()}\n{path}\n{timestamp}\n".encode()
    return hmac.new(key, head + body, "sha256").hexdigest()


def sign_request(key: bytes, method: str, path: str, body: bytes, now: float) -> str:
    """The ``X-Semnet-Auth`` header value for a request made at unix time ``now``."""
    timestamp = int(now)
    return f"{timestamp}:{request_mac(key, method, path, timestamp, body)}"


REQUEST_REFUSALS = ("missing", "malformed", "stale", "signature", "replay")


class RequestVerifier:
    """Checks signed control requests; ``rejected`` counts refusals by reason (metric labels)."""

    def __init__(self, key: bytes, window: float = REQUEST_WINDOW, max_seen: int = MAX_SEEN):
        self.key = key
        self.window = window
        self.max_seen = max_seen
        self.rejected: dict[str, int] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify_head(self, header: str | None, now: float) -> str:
        """What can be refused from the header alone, before the body is read (an unsigned
        request must not make the daemon buffer its body): '' or the reason, counted."""
        return self._count(self._head_reason(header, now))

    def verify(self, header: str | None, method: str, path: str, body: bytes, now: float) -> str:
        """'' when the request is authentic and fresh, else the reason it is refused."""
        return self._count(
            self._head_reason(header, now) or self._body_reason(header, method, path, body, now)
        )

    def _count(self, reason: str) -> str:
        if reason:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return reason

    def _head_reason(self, header: str | None, now: float) -> str:
        if not header:
            return "missing"
        stamp, sep, mac = header.partition(":")
        if not sep or not stamp.isdigit() or len(stamp) > 12 or len(mac) != 64:
            return "malformed"
        if abs(now - int(stamp)) > self.window:
            return "stale"
        if mac in self._seen:
            return "replay"
        return ""

    def _body_reason(self, header: str, method: str, path: str, body: bytes, now: float) -> str:
        stamp, _, mac = header.partition(":")
        expected = request_mac(self.key, method, path, int(stamp), body).encode()
        if not hmac.compare_digest(mac.encode(errors="replace"), expected):
            return "signature"
        while self._seen and next(iter(self._seen.values())) < now - 2 * self.window:
            self._seen.popitem(last=False)
        if mac in self._seen:  # a copy of the request verified meanwhile
            return "replay"
        self._seen[mac] = now
        if len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return ""
