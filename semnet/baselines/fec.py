"""Packet-level erasure FEC over datagram payloads: zfec's Reed-Solomon code over GF(2^8).

K equal-size source shares are cut into blocks; a block of k source shares gets
m = ceil(k · overhead / 100) parity shares, and any k of its k + m shares rebuild it. zfec allows
k + m <= 256, so long streams take several balanced blocks, sent one after the other. The plan
is a pure function of (K, overhead): a receiver recomputes it from those two numbers alone.
"""

import math

import zfec

from semnet.errors import ConfigError

MAX_SHARES = 256  # zfec: k + m <= 256
MAX_OVERHEAD = 255  # percent; travels as a u8


def parity(k: int, overhead: int) -> int:
    """Parity shares for k source shares at ``overhead`` percent (rounded up)."""
    return -(-k * overhead // 100)


def plan(source: int, overhead: int) -> list[tuple[int, int]]:
    """(k, m) of each block, in send order: as few blocks as zfec allows, sizes within one."""
    if source < 1:
        raise ConfigError(f"fec: {source} source shares")
    if not 0 <= overhead <= MAX_OVERHEAD:
        raise ConfigError(f"fec: overhead {overhead}% is not in 0..{MAX_OVERHEAD}%")
    if overhead == 0:
        return [(source, 0)]
    k_max = max(k for k in range(1, MAX_SHARES) if k + parity(k, overhead) <= MAX_SHARES)
    blocks = math.ceil(source / k_max)
    base, extra = divmod(source, blocks)
    sizes = [base + (b < extra) for b in range(blocks)]
    return [(k, parity(k, overhead)) for k in sizes]


def encode(shares: list[bytes], overhead: int) -> list[bytes]:
    """Source and parity shares of every block, block after block (source shares first)."""
    out: list[bytes] = []
    start = 0
    for k, m in plan(len(shares), overhead):
        block = tuple(shares[start : start + k])
        start += k
        out += block if m == 0 else zfec.Encoder(k, k + m).encode(block)
    return out


def decode(received: dict[int, bytes], source: int, overhead: int) -> dict[int, bytes]:
    """Source shares by index: a whole block where >= k of its shares arrived, otherwise just
    the source shares that did."""
    out: dict[int, bytes] = {}
    first_share = first_source = 0
    for k, m in plan(source, overhead):
        got = {j: received[first_share + j] for j in range(k + m) if first_share + j in received}
        if all(j in got for j in range(k)) or len(got) < k:
            out.update({first_source + j: s for j, s in got.items() if j < k})
        else:
            nums = sorted(got)[:k]
            blocks = zfec.Decoder(k, k + m).decode(tuple(got[j] for j in nums), tuple(nums))
            out.update({first_source + j: bytes(s) for j, s in enumerate(blocks)})
        first_share += k + m
        first_source += k
    return out
