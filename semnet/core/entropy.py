"""Entropy coding of quantized latent symbols with per-channel probability tables (sans-IO).

A codec with a learned entropy model exports one probability row per latent channel over the
quantizer's alphabet (``Codec.entropy_table``); the coder here turns a run of symbols, each with
its channel, into one self-contained ANS stream and back. Nothing but numpy goes in or out, so
the receiver needs no torch to decode a payload.

The coder is ``constriction``'s range-ANS (Rust, maintained, numpy API) with its leaky
categorical model: every symbol of the alphabet keeps a nonzero probability, so any symbol the
quantizer can produce is codable, and two processes building a model from the same float table
quantize it to the same fixed-point table. Within a run, symbols are coded channel by channel
(stable order), one model per channel, so a run costs one model switch per channel it touches.
"""

from __future__ import annotations

import constriction
import numpy as np

from semnet.errors import ConfigError, WireError

# constriction's submodules are attributes of its extension module, not importable packages.
Categorical = constriction.stream.model.Categorical
AnsCoder = constriction.stream.stack.AnsCoder

# Smallest probability the coder represents (24-bit fixed point): the cost estimate's floor.
_MIN_PROBABILITY = 2.0**-24


class EntropyTables:
    """Per-channel categorical models over ``levels`` symbols, built once per codec."""

    def __init__(self, pmf: np.ndarray) -> None:
        table = np.array(pmf, dtype=np.float64)
        if table.ndim != 2 or min(table.shape) < 1:
            raise ConfigError(f"entropy table of shape {table.shape} is not (channels, levels)")
        if not np.isfinite(table).all() or (table < 0).any() or (table.sum(axis=1) <= 0).any():
            raise ConfigError("entropy table rows must be finite, non-negative and not all zero")
        table /= table.sum(axis=1, keepdims=True)
        self.channels, self.levels = table.shape
        self.models = [Categorical(row, perfect=False) for row in table]
        # -log2 p per (channel, symbol): what cutting runs to a byte budget estimates with.
        self.cost = -np.log2(np.maximum(table, _MIN_PROBABILITY))

    def bits(self, symbols: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Estimated information content of each symbol, in bits."""
        return self.cost[channels, symbols]


def _groups(channels: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(stable order by channel, [(channel, start, stop) in that order]) of a run."""
    order = np.argsort(channels, kind="stable")
    ordered = channels[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [ordered.size]))
    return order, [(int(ordered[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def encode(symbols: np.ndarray, channels: np.ndarray, tables: EntropyTables) -> bytes:
    """One ANS stream (little-endian u32 words) for ``symbols``, each coded with its channel's
    model; ConfigError if a symbol or channel is outside the tables."""
    symbols, channels = np.asarray(symbols), np.asarray(channels)
    if symbols.shape != channels.shape or symbols.ndim != 1 or symbols.size == 0:
        raise ConfigError("entropy encode needs equal, non-empty 1-D symbols and channels")
    if symbols.max() >= tables.levels or channels.max() >= tables.channels:
        raise ConfigError("symbol or channel outside the entropy tables")
    order, groups = _groups(channels)
    ordered = symbols[order].astype(np.int32)
    coder = AnsCoder()
    for channel, start, stop in reversed(groups):  # a stack: the last group is pushed first
        coder.encode_reverse(ordered[start:stop], tables.models[channel])
    return coder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, channels: np.ndarray, tables: EntropyTables) -> np.ndarray:
    """Inverse of :func:`encode` given the run's channels (the receiver knows them from the
    layout). WireError("entropy") unless the stream holds exactly these symbols."""
    channels = np.asarray(channels)
    if len(data) % 4:  # empty is a stream: a few very likely symbols may need no word at all
        raise WireError("entropy", f"{len(data)} bytes is not a whole stream of words")
    if channels.size == 0 or channels.max() >= tables.channels:
        raise WireError("entropy", "run has no symbols, or a channel outside the tables")
    order, groups = _groups(channels)
    try:
        coder = AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        ordered = np.concatenate(
            [coder.decode(tables.models[c], stop - start) for c, start, stop in groups]
        )
    except (ValueError, RuntimeError) as exc:
        raise WireError("entropy", str(exc)) from None
    if not coder.is_empty():
        raise WireError("entropy", "stream does not end where its symbols do")
    symbols = np.empty(channels.size, dtype=np.uint16)
    symbols[order] = ordered
    return symbols
