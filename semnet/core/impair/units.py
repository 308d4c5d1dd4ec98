"""tc's value syntax: times, percentages, rates and sizes, parsed the way iproute2 parses them.

Every parser takes the token and a ``where`` (the option it belongs to) so that a bad value is
reported as ``"loss gemodel: '130%' is not a percentage in 0..100%"``. Unit names compare
case-insensitively, as tc's ``strcasecmp`` does. Differences from tc, on purpose: negative values
and nan/inf are refused, a lone ``%`` is not 0%, times round to the nearest nanosecond instead of
truncating, and every value must fit its range (times up to :data:`MAX_TIME_NS`, rates up to
netem's u64 bytes/s, sizes up to u32) instead of wrapping or overflowing.
"""

from __future__ import annotations

import math
import re

from semnet.errors import ConfigError

U32_MAX = 0xFFFFFFFF
U64_MAX = 2**64 - 1
# The longest delay, jitter or slot wait: netem takes s64 nanoseconds (292 years), but a copy
# held longer than an hour is a typo, and the proxy keeps every held copy in memory.
MAX_TIME_NS = 3600 * 1_000_000_000

# strtod's decimal subset: sign, digits with an optional point, optional exponent.
_NUMBER = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(.*)\Z", re.DOTALL)

# get_time64 (tc/tc_util.c): a bare number is nanoseconds since iproute2 4.15.
_TIME_NS = {
    "": 1,
    "ns": 1,
    "nsec": 1,
    "nsecs": 1,
    "us": 1_000,
    "usec": 1_000,
    "usecs": 1_000,
    "ms": 1_000_000,
    "msec": 1_000_000,
    "msecs": 1_000_000,
    "s": 1_000_000_000,
    "sec": 1_000_000_000,
    "secs": 1_000_000_000,
}

# get_rate64's suffix table, in bits per second; "bps" means BYTES per second, as in tc.
_RATE_BITS = {
    "": 1.0,
    "bit": 1.0,
    "kibit": 1024.0,
    "kbit": 1000.0,
    "mibit": 1024.0**2,
    "mbit": 1e6,
    "gibit": 1024.0**3,
    "gbit": 1e9,
    "tibit": 1024.0**4,
    "tbit": 1e12,
    "bps": 8.0,
    "kibps": 8.0 * 1024,
    "kbps": 8e3,
    "mibps": 8.0 * 1024**2,
    "mbps": 8e6,
    "gibps": 8.0 * 1024**3,
    "gbps": 8e9,
    "tibps": 8.0 * 1024**4,
    "tbps": 8e12,
}

# get_size's suffixes, in bytes.
_SIZE_BYTES = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "kbit": 1024 // 8,
    "mbit": 1024**2 // 8,
    "gbit": 1024**3 // 8,
}


def _split(token: str, where: str, what: str) -> tuple[float, str]:
    match = _NUMBER.match(token)
    if match is None:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    value = float(match.group(1))
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {token!r} is too large (not a finite number)")
    return value, match.group(2).lower()


def _at_most(value: float, bound: int, token: str, where: str, bound_text: str) -> None:
    """Refuse ``value`` (in the parser's unit, possibly inf after scaling) above ``bound``."""
    if value > bound:
        raise ConfigError(f"{where}: {token!r} is above {bound_text}")


def starts_like_number(token: str) -> bool:
    """iproute2's NEXT_IS_NUMBER: an optional argument is taken only if it starts with a digit."""
    return token[:1].isdigit()


def parse_time(token: str, where: str) -> int:
    """A tc time (``20ms``, ``0.02s``, ``800us``, ``1500`` = 1500 ns) as integer nanoseconds."""
    what = "a time (e.g. 20ms, 800us, 0.02s)"
    value, unit = _split(token, where, what)
    scale = _TIME_NS.get(unit)
    if scale is None or value < 0:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    _at_most(value * scale, MAX_TIME_NS, token, where, "3600s (the longest time semnet holds)")
    return round(value * scale)


def format_time(ns: int) -> str:
    """Nanoseconds in the largest unit that keeps the value an integer, so it parses back."""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns % scale == 0 and ns:
            return f"{ns // scale}{unit}"
    return f"{ns}ns"


def parse_percent(token: str, where: str) -> float:
    """A tc percentage (``1%``, ``0.1%``, or a bare ``1`` which tc also reads as 1%), in percent."""
    what = "a percentage in 0..100%"
    match = _NUMBER.match(token)
    if match is None or match.group(2) not in ("", "%"):
        raise ConfigError(f"{where}: {token!r} is not {what}")
    value = float(match.group(1))
    if not 0.0 <= value <= 100.0:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    return value


def format_percent(percent: float) -> str:
    """The shortest text that parses back to exactly ``percent``."""
    return format_number(percent) + "%"


def parse_number(token: str, where: str) -> float:
    """A plain non-negative decimal number (no unit)."""
    what = "a plain number"
    value, unit = _split(token, where, what)
    if unit or value < 0:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    return value


def format_number(value: float) -> str:
    """The shortest decimal that parses back to exactly ``value`` (``3`` rather than ``3.0``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def percent_to_u32(percent: float) -> int:
    """netem's fixed-point probability: iproute2's ``rint(fraction * UINT32_MAX)``."""
    return round(percent / 100.0 * U32_MAX)


def parse_rate(token: str, where: str) -> int:
    """A tc rate (``10mbit``, ``100kbit``, ``1MBps``; bare = bit/s) as integer bytes per second."""
    what = "a rate (e.g. 10mbit, 512kbit, 1gbit)"
    if token.endswith("%"):
        raise ConfigError(f"{where}: {token!r}: a percent of the device speed needs a device")
    value, unit = _split(token, where, what)
    scale = _RATE_BITS.get(unit)
    if scale is None or value < 0:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    _at_most(value * scale / 8, U64_MAX, token, where, "netem's 2**64-1 bytes/s")
    bytes_per_s = int(value * scale / 8)
    if bytes_per_s < 1:
        raise ConfigError(f"{where}: {token!r} is below 8bit (1 byte/s)")
    return bytes_per_s


def format_rate(bytes_per_s: int) -> str:
    """Bytes per second as a bit rate in the largest decimal unit that stays an integer."""
    bits = bytes_per_s * 8
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits % scale == 0:
            return f"{bits // scale}{unit}"
    return f"{bits}bit"


def parse_size(token: str, where: str) -> int:
    """A tc size (``1500``, ``64k`` = 65536, ``1mb``) as an integer count."""
    what = "a size (e.g. 1500, 64k)"
    value, unit = _split(token, where, what)
    scale = _SIZE_BYTES.get(unit)
    if scale is None or value < 0:
        raise ConfigError(f"{where}: {token!r} is not {what}")
    _at_most(value * scale, U32_MAX, token, where, str(U32_MAX))
    return int(value * scale)


def parse_int(token: str, where: str, lo: int, hi: int) -> int:
    """A decimal integer in ``lo..hi`` (tc's get_u32/get_s32, without octal and hex)."""
    try:
        value = int(token, 10)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi or "_" in token:
        raise ConfigError(f"{where}: {token!r} is not an integer in {lo}..{hi}")
    return value
