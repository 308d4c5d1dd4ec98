"""Datagrams of an entropy-coded frame: runs of the send order, each its own ANS stream.

The send order is the fixed-width frames' (``packetize.layout``: the partition's units,
permuted by π when interleaving). The sender cuts it into consecutive runs, each as long as fits
one datagram once coded, so datagrams carry different numbers of elements but every one fills
its payload. A payload is the run's start and length in the send order (u32 each, network
order), then the run's entropy-coded stream (``semnet.core.entropy``). A datagram thus decodes
without any other, and losing it loses exactly its run, as with fixed-width values.

Every length is checked before anything is decoded (:func:`check_payload`, arithmetic only);
a stream that does not decode to exactly its run is dropped at decode time and its reason
counted, and the rest of the frame decodes.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable

import numpy as np

from semnet.core import entropy
from semnet.core.entropy import EntropyTables
from semnet.core.packetize import frame_datagrams, layout, run_importance
from semnet.core.wire import MAX_COUNT, Datagram, FrameDescriptor
from semnet.errors import ConfigError, WireError

RUN = struct.Struct(">II")
# A run may claim at most this many symbols per byte of its datagram's size: it bounds the
# decoding work one (perhaps forged) datagram can ask for, and is far above what a real latent
# needs (a channel the model is sure of still costs a fraction of a bit per symbol).
MAX_SYMBOLS_PER_BYTE = 64
# Bytes an ANS stream takes beyond its symbols' information content (its final state, word
# rounding, the coder's fixed-point probabilities): what a run's estimate leaves free.
_STREAM_SLACK = 12


def _check_tables(desc: FrameDescriptor, tables: EntropyTables) -> None:
    if tables.channels != desc.latent[0] or tables.levels != 1 << desc.quant.bits:
        raise ConfigError(
            f"entropy tables ({tables.channels} channels x {tables.levels} symbols) do not fit "
            f"a latent of {desc.latent[0]} channels with {desc.quant.bits}-bit symbols"
        )


def _coded_runs(symbols, channels, budget, most, tables) -> list[tuple[int, bytes]]:
    """(start, payload) per datagram, cut greedily: each run as long as its estimated stream
    fits ``budget`` bytes; a run whose real stream overshoots is shortened until it fits."""
    total = np.concatenate(([0.0], np.cumsum(tables.bits(symbols, channels))))
    room = (budget - RUN.size - _STREAM_SLACK) * 8
    out: list[tuple[int, bytes]] = []
    start = 0
    while start < symbols.size:
        stop = int(np.searchsorted(total, total[start] + room, side="right")) - 1
        n = min(max(stop - start, 1), most, symbols.size - start)
        while True:
            stream = entropy.encode(symbols[start : start + n], channels[start : start + n], tables)
            if RUN.size + len(stream) <= budget:
                break
            if n == 1:
                raise ConfigError(f"one symbol does not fit a payload of {budget} bytes")
            n = max(1, math.floor(n * 0.9))
        out.append((start, RUN.pack(start, n) + stream))
        start += n
    return out


def packetize(
    q: np.ndarray,
    desc: FrameDescriptor,
    tables: EntropyTables,
    stream: int,
    frame: int,
    first_seq: int,
    key: bytes | None = None,
    spatial: np.ndarray | None = None,
) -> list[bytes]:
    """Entropy-code a quantized latent into the frame's datagrams, numbered from ``first_seq``.

    ``spatial`` is the importance map a descriptor with importance needs (one byte per
    datagram, the map's mean over the run: ``packetize.run_importance``).
    """
    if not desc.entropy:
        raise ConfigError("descriptor is not entropy coded")
    if q.shape != desc.latent:
        raise ConfigError(f"latent shape {q.shape} does not match descriptor {desc.latent}")
    if desc.importance != (spatial is not None):
        raise ConfigError("importance: a map exactly when the descriptor carries importance")
    _check_tables(desc, tables)
    order = layout(desc).order
    symbols = q.reshape(-1)[order]
    channels = order // (desc.latent[1] * desc.latent[2])
    budget = desc.datagram_size - desc.overhead
    runs = _coded_runs(symbols, channels, budget, MAX_SYMBOLS_PER_BYTE * desc.datagram_size, tables)
    if len(runs) > MAX_COUNT:
        raise ConfigError(f"{len(runs)} datagrams > {MAX_COUNT}: raise datagram_size")
    importance = None
    if spatial is not None:
        importance = run_importance(desc, order, np.array([s for s, _ in runs]), spatial)
    payloads = [payload for _, payload in runs]
    return frame_datagrams(desc, payloads, stream, frame, first_seq, key, importance)


def check_payload(dg: Datagram) -> None:
    """Reject a coded payload whose run header disagrees with its descriptor or its length:
    shorter than a run header, a stream of no whole words, a run outside the latent, or more
    symbols than MAX_SYMBOLS_PER_BYTE allows. Arithmetic only, nothing decoded."""
    desc, payload = dg.descriptor, dg.payload
    if len(payload) < RUN.size or (len(payload) - RUN.size) % 4:
        raise WireError("payload_length", f"{len(payload)} bytes is no run header and stream")
    start, n = RUN.unpack_from(payload)
    total = math.prod(desc.latent)
    if n == 0 or start >= total or n > total - start:
        raise WireError("bad_field", f"run {start}+{n} outside a latent of {total} elements")
    if n > MAX_SYMBOLS_PER_BYTE * desc.datagram_size:
        size = desc.datagram_size
        raise WireError("payload_length", f"run of {n} symbols in a {size}-byte datagram")


def depacketize(
    datagrams: Iterable[Datagram], desc: FrameDescriptor, tables: EntropyTables
) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Decode received runs; returns (q uint16, zero where missing; received mask; reasons of
    the datagrams dropped: their run overlaps another's, or their stream did not decode).

    Assumes each datagram belongs to ``desc``'s frame and passed :func:`check_payload`.
    """
    order = layout(desc).order
    q = np.zeros(order.size, dtype=np.uint16)
    mask = np.zeros(order.size, dtype=bool)
    dropped: Counter = Counter()
    try:
        _check_tables(desc, tables)
    except ConfigError:
        dropped["entropy_table"] = sum(1 for _ in datagrams)
        return q.reshape(desc.latent), mask.reshape(desc.latent), dropped
    plane = desc.latent[1] * desc.latent[2]
    runs = sorted((RUN.unpack_from(dg.payload), dg.index, dg) for dg in datagrams)
    covered = 0  # a sender's runs tile the order: overlapping ones are forged, and dropped
    for (start, n), _, dg in runs:  # before decoding, so a frame costs at most its latent
        if start < covered:
            dropped["overlap"] += 1
            continue
        covered = start + n
        elements = order[start : start + n]
        try:
            q[elements] = entropy.decode(dg.payload[RUN.size :], elements // plane, tables)
        except WireError as exc:
            dropped[exc.reason] += 1
            continue
        mask[elements] = True
    return q.reshape(desc.latent), mask.reshape(desc.latent), dropped
