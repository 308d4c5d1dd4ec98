"""Fuzz the receiver core: mutated datagrams into ``Reassembler.ingest``, nothing may escape.

Two receivers take every datagram: one without a key, one with. Inputs are valid datagrams
(several descriptors, authenticated or not) put through seeded mutations: random bytes, bit
flips, a header or descriptor field set to a boundary value, truncation, extension, splices,
replays and fresh frames with wrapped or jumping sequence numbers. Most mutations reseal the
crc (and, for the keyed receiver, the tag) so they reach the field checks behind them.

Entropy-coded frames are among the seeds: their run headers are checked in ``ingest``, and
every coded frame a receiver delivers is decoded (``semnet.core.coded.depacketize``, fuzzing
the ANS payloads) with the seeds' tables, where likewise nothing may escape.

Checked all along: no exception escapes ``ingest`` or the coded decoder, the caps hold, and
every datagram lands in one counted bucket (``datagrams == accepted + duplicates + late +
malformed``, malformed by reason). Prints JSON (``--out`` writes it too); exit status 1 on
any finding.

    .venv/bin/python scripts/fuzz_receiver.py [-n 1000000] [--seed 1] [--out FILE]
    .venv/bin/python scripts/fuzz_receiver.py --engine atheris -n 1000000   # coverage-guided
    .venv/bin/python scripts/fuzz_receiver.py --write-corpus tests/fixtures/fuzz

The atheris engine (``pip install atheris``) lets libFuzzer pick the bytes; its first input
byte chooses raw, crc-resealed or re-tagged, so coverage reaches past the crc.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import random
import struct
import sys
import time
import traceback
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

KEY = b"fuzzing-key-0123456789abcdef"
WRONG_KEY = b"not-the-key-0123456789abcdef"
CAPS = {
    "deadline": 1.0,
    "max_frames": 32,
    "max_bytes": 256 * 1024,
    "recent": 256,
    "max_streams": 16,
    "max_stream_frames": 8,
}
# (offset, struct format) of every header and descriptor field but the crc.
FIELDS = [
    (0, ">B"), (1, ">B"), (2, ">B"), (3, ">B"), (4, ">H"), (6, ">H"), (8, ">H"), (10, ">I"),
    (14, ">I"), (22, ">H"), (24, ">H"), (26, ">H"), (28, ">H"), (30, ">H"), (32, ">H"),
    (34, ">B"), (35, ">B"), (36, ">f"), (40, ">f"), (44, ">B"), (45, ">B"), (46, ">I"),
    (50, ">H"),
]  # fmt: skip
CRC = slice(18, 22)
FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-45, 3.4e38, -3.4e38, math.inf, -math.inf, math.nan]


def coded_tables(channels: int = 6, bits: int = 4):
    """Per-channel tables of the coded seeds: peaked like a trained prior's, one width each."""
    from semnet.core.entropy import EntropyTables

    k = np.arange(1 << bits) - (1 << bits) // 2
    widths = np.linspace(0.3, 3.0, channels)
    return EntropyTables(np.exp(-np.abs(k)[None, :] / widths[:, None]))


def seeds(wire, packetize) -> list[tuple[list[bytes], bool]]:
    """Valid frames of several descriptors, each (its datagrams, authenticated); the last two
    are entropy coded with :func:`coded_tables`."""
    out = []
    shapes = [
        ((4, 8, 8), wire.QuantKind.ROUND, 8, wire.PartitionSpec(wire.Scheme.CHANNEL), 64),
        ((64, 12, 16), wire.QuantKind.UNIFORM, 5, wire.PartitionSpec(wire.Scheme.CHANNEL), 1148),
        ((3, 5, 7), wire.QuantKind.ASYMMETRIC, 3, wire.PartitionSpec(wire.Scheme.PATCH, 2, 2), 9),
        ((2, 6, 6), wire.QuantKind.UNIFORM, 16, wire.PartitionSpec(wire.Scheme.TOKEN, 5), 20),
    ]
    rng = np.random.default_rng(0)
    for i, (latent, kind, bits, part, payload) in enumerate(shapes):
        for key in (None, KEY):
            overhead = wire.HEADER_SIZE + (0 if key is None else 16)
            desc = wire.FrameDescriptor(
                codec_id=1,
                image_h=latent[1] * 16,
                image_w=latent[2] * 16,
                latent=latent,
                quant=wire.QuantSpec(kind, bits, -1.0, 1.0),
                partition=part,
                interleave=bool(i % 2),
                seed=i,
                datagram_size=overhead + payload,
                authenticated=key is not None,
            )
            q = rng.integers(0, 1 << bits, size=latent, dtype=np.uint16)
            out.append((packetize(q, desc, i, i, 0, key), key is not None))
    from semnet.core import coded

    tables = coded_tables()
    for key in (None, KEY):
        desc = wire.FrameDescriptor(
            codec_id=2,
            image_h=9 * 16,
            image_w=11 * 16,
            latent=(6, 9, 11),
            quant=wire.QuantSpec(wire.QuantKind.ROUND, 4, -8.0, 7.0),
            partition=wire.PartitionSpec(wire.Scheme.SPATIAL, 2, 2),
            interleave=True,
            seed=7,
            datagram_size=wire.HEADER_SIZE + (0 if key is None else 16) + 40,
            authenticated=key is not None,
            entropy=True,
        )
        q = np.clip(rng.laplace(8, 1.5, desc.latent), 0, 15).astype(np.uint16)
        out.append((coded.packetize(q, desc, tables, 9, 9, 0, key), key is not None))
    return out


def reseal(buf: bytearray, key: bytes | None) -> bytes:
    """Recompute the tag (when the flags say authenticated and a key is given) and the crc."""
    if len(buf) < 22:
        return bytes(buf)
    buf[CRC] = b"\0\0\0\0"
    if key is not None and len(buf) >= 68 and buf[2] & 0x02:
        buf[-16:] = hmac.digest(key, bytes(buf[:-16]), "sha256")[:16]
    struct.pack_into(">I", buf, 18, zlib.crc32(buf))
    return bytes(buf)


class Mutator:
    """Seeded structured mutations of a pool of valid datagrams."""

    def __init__(self, frames: list[tuple[list[bytes], bool]], seed: int) -> None:
        self.frames = frames
        self.pool = [(d, authed) for data, authed in frames for d in data]
        self.rng = random.Random(seed)
        self.history: list[bytes] = []  # recent outputs, for replays
        self.queue: list[bytes] = []  # the rest of a burst
        self.kinds: Counter[str] = Counter()

    def value(self, fmt: str) -> float:
        r = self.rng
        if fmt == ">f":
            return r.choice(FLOATS) if r.random() < 0.7 else r.uniform(-1e6, 1e6)
        top = (1 << (8 * struct.calcsize(fmt))) - 1
        return r.choice([0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, r.randint(0, top)])

    def renumber(self, buf: bytearray, authed: bool, stream: int, seq: int, frame: int) -> bytes:
        struct.pack_into(">H", buf, 4, stream)
        struct.pack_into(">II", buf, 10, seq % 2**32, frame)
        return reseal(buf, KEY if authed else None)

    def ids(self) -> tuple[int, int, int]:
        """Stream, frame and first sequence number of a fresh frame, often near the wrap."""
        r = self.rng
        stream = r.randrange(8) if r.random() < 0.9 else r.randrange(1 << 16)
        frame = r.randrange(64) if r.random() < 0.5 else r.getrandbits(32)
        seq = r.choice([r.getrandbits(32), 2**32 - 1 - r.randrange(8), r.randrange(4096)])
        return stream, frame, seq

    def burst(self) -> bytes:
        """A whole frame renumbered, with some datagrams lost, duplicated or reordered."""
        r = self.rng
        data, authed = r.choice(self.frames)
        stream, frame, seq = self.ids()
        out = [
            self.renumber(bytearray(d), authed, stream, seq + i, frame)
            for i, d in enumerate(data)
            if r.random() > 0.1
        ]
        out += r.sample(out, k=min(len(out), r.randint(0, 2)))
        if r.random() < 0.3:
            r.shuffle(out)
        self.queue = out[::-1]
        return self.queue.pop() if self.queue else self.next()

    def next(self) -> bytes:
        if self.queue:
            return self.queue.pop()
        r = self.rng
        base, authed = r.choice(self.pool)
        key = r.choice([KEY, KEY, WRONG_KEY]) if authed else None
        buf = bytearray(base)
        kind = r.choices(
            ["random", "flip", "field", "truncate", "extend", "splice", "replay", "fresh", "burst"],
            [1, 2, 6, 1, 1, 1, 2, 3, 1],
        )[0]
        self.kinds[kind] += 1
        if kind == "random":
            out = r.randbytes(r.choice([0, 1, 21, 51, 52, 53, 68, r.randrange(1300)]))
        elif kind == "flip":
            for _ in range(r.randint(1, 8)):
                bit = r.randrange(8 * len(buf))
                buf[bit >> 3] ^= 1 << (bit & 7)
            out = reseal(buf, key) if r.random() < 0.5 else bytes(buf)
        elif kind == "field":
            for _ in range(r.randint(1, 3)):
                offset, fmt = r.choice(FIELDS)
                value = self.value(fmt)
                struct.pack_into(fmt, buf, offset, value)
            out = reseal(buf, key)
        elif kind == "truncate":
            out = reseal(buf[: r.randrange(len(buf))], key)
        elif kind == "extend":
            out = reseal(buf + r.randbytes(r.randint(1, 64)), key)
        elif kind == "splice":
            other = r.choice(self.pool)[0]
            cut = r.randrange(1, min(len(buf), len(other)))
            out = reseal(buf[:cut] + other[cut:], key)
        elif kind == "replay" and self.history:
            out = r.choice(self.history)
        elif kind == "burst":
            out = self.burst()
        else:  # one datagram of a fresh frame
            out = self.renumber(buf, authed, *self.ids())
        if len(self.history) < 256:
            self.history.append(out)
        else:
            self.history[r.randrange(256)] = out
        return out


class Harness:
    """Two receivers fed the same datagrams; counts findings instead of stopping at the first."""

    def __init__(self, reassembly) -> None:
        self.receivers = {
            "open": reassembly.Reassembler(**CAPS),
            "keyed": reassembly.Reassembler(**CAPS, key=KEY),
        }
        self.now = 0.0
        self.fed = 0
        self.exceptions = 0
        self.first_exception = ""
        self.crashes: list[bytes] = []
        self.caps_held = True
        self.tables = coded_tables()
        self.coded_frames = 0

    def decode(self, frames) -> None:
        """Entropy-decode the coded frames a receiver delivered, as the receiver's decoder does."""
        from semnet.core import coded

        for frame in frames:
            if frame.descriptor.entropy:
                coded.depacketize(frame.datagrams.values(), frame.descriptor, self.tables)
                self.coded_frames += 1

    def feed(self, data: bytes, step: float) -> None:
        self.now += step
        self.fed += 1
        for r in self.receivers.values():
            try:
                self.decode(r.ingest(data, self.now))
            except Exception:  # the finding this harness exists for
                self.exceptions += 1
                self.first_exception = self.first_exception or traceback.format_exc()
                if len(self.crashes) < 16:
                    self.crashes.append(data)
            if r.pending_frames > r.max_frames or r.buffered_bytes > r.max_bytes:
                self.caps_held = False

    def report(self, engine: str, seed: int, seconds: float, kinds: Counter) -> dict:
        receivers = {}
        identity = True
        for name, r in self.receivers.items():
            self.decode(r.flush())
            c = r.counters
            identity &= c.datagrams == c.accepted + c.duplicates + c.late + c.malformed
            identity &= c.malformed == sum(c.malformed_by_reason.values())
            receivers[name] = {
                "datagrams": c.datagrams,
                "accepted": c.accepted,
                "duplicates": c.duplicates,
                "late": c.late,
                "malformed": c.malformed,
                "malformed_by_reason": dict(sorted(c.malformed_by_reason.items())),
                "evicted_by_reason": dict(sorted(c.evicted_by_reason.items())),
                "evicted_streams": c.evicted_streams,
                "frames_complete": c.frames_complete,
                "frames_incomplete": c.frames_incomplete,
            }
        return {
            "engine": engine,
            "seed": seed,
            "datagrams": self.fed,
            "ingests": self.fed * len(self.receivers),
            "seconds": round(seconds, 2),
            "datagrams_per_s": round(self.fed / seconds) if seconds else None,
            "mutations": dict(sorted(kinds.items())),
            "receivers": receivers,
            "caps": CAPS,
            "coded_frames_decoded": self.coded_frames,
            "exceptions": self.exceptions,
            "first_exception": self.first_exception,
            "caps_held": self.caps_held,
            "identity_holds": identity,
            "ok": self.exceptions == 0 and self.caps_held and identity,
        }


def run_seeded(n: int, seed: int) -> dict:
    """The seeded mutator: reproducible, no extra dependency (the test suite runs this)."""
    from semnet.core import reassembly, wire
    from semnet.core.packetize import packetize

    mutator = Mutator(seeds(wire, packetize), seed)
    harness = Harness(reassembly)
    clock = random.Random(seed ^ 0x5EED)
    t0 = time.perf_counter()
    for _ in range(n):
        harness.feed(mutator.next(), clock.choice([0.0, 0.0, 0.0, 1e-4, 1e-3, 0.02]))
    return harness.report("seeded", seed, time.perf_counter() - t0, mutator.kinds)


def run_atheris(n: int, seed: int, out: Path | None) -> None:
    """libFuzzer drives; the JSON is written when the n-th input is done (libFuzzer exits
    without running Python's exit handlers)."""
    import tempfile

    import atheris

    with atheris.instrument_imports():
        from semnet.core import reassembly, wire
        from semnet.core.packetize import packetize

    corpus = Path(tempfile.mkdtemp(prefix="semnet-fuzz-"))  # the valid frames, mode byte first
    for i, (data, authed) in enumerate(seeds(wire, packetize)):
        for j, d in enumerate(data):
            (corpus / f"{i}-{j}").write_bytes(bytes([2 if authed else 1]) + d)

    harness = Harness(reassembly)
    kinds: Counter[str] = Counter()
    t0 = time.perf_counter()

    def one(data: bytes) -> None:
        mode, body = (data[0] % 3, bytearray(data[1:])) if data else (0, bytearray())
        kinds[("raw", "resealed", "retagged")[mode]] += 1
        if mode and len(body) >= 22:
            body = bytearray(reseal(body, KEY if mode == 2 else None))
        harness.feed(bytes(body), 1e-4)
        if harness.fed == n:
            emit(harness.report("atheris", seed, time.perf_counter() - t0, kinds), out)

    # libFuzzer's start-up inputs count towards -runs: leave room so the n-th one is reached
    atheris.Setup([sys.argv[0], f"-runs={n + 64}", f"-seed={seed}", str(corpus)], one)
    atheris.Fuzz()


def write_corpus(folder: Path, per_reason: int = 3) -> int:
    """Regression fixtures: mutated datagrams named ``<receiver>-<reason>-<i>.bin`` by what the
    open or keyed parser says of them (``ok`` for ones that parse)."""
    from semnet.core import wire
    from semnet.core.packetize import check_payload, packetize
    from semnet.errors import WireError

    folder.mkdir(parents=True, exist_ok=True)
    mutator = Mutator(seeds(wire, packetize), 7)
    kept: Counter[str] = Counter()
    for _ in range(20000):
        data = mutator.next()
        for name, key in (("open", None), ("keyed", KEY)):
            try:
                check_payload(wire.parse(data, key))
                reason = "ok"
            except WireError as exc:
                reason = exc.reason
            label = f"{name}-{reason}"
            if kept[label] < per_reason:
                (folder / f"{label}-{kept[label]}.bin").write_bytes(data)
                kept[label] += 1
    return sum(kept.values())


def emit(result: dict, out: Path | None) -> None:
    text = json.dumps(result, indent=1)
    print(text, flush=True)
    if out is not None:
        out.write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="datagrams (default 10**6)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=["seeded", "atheris"], default="seeded")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--write-corpus", type=Path, metavar="DIR", help="write fixtures and exit")
    args = ap.parse_args()
    if args.write_corpus:
        print(f"{write_corpus(args.write_corpus)} fixtures in {args.write_corpus}")
        return
    if args.engine == "atheris":
        run_atheris(args.n, args.seed, args.out)
        return
    result = run_seeded(args.n, args.seed)
    emit(result, args.out)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
