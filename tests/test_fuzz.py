"""Fuzzing the parser and the receiver core: structured mutations (hypothesis), a seeded run of
the fuzz script scaled down from its 10**6 datagrams, and a corpus of binary regressions."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core import coded, wire
from semnet.core import packetize as packetize_module
from semnet.core.packetize import packetize
from semnet.core.reassembly import Reassembler
from semnet.errors import WireError

ROOT = Path(__file__).parent.parent
CORPUS = Path(__file__).parent / "fixtures" / "fuzz"


def load_script():
    spec = importlib.util.spec_from_file_location(
        "fuzz_receiver", ROOT / "scripts/fuzz_receiver.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = load_script()
FRAMES = fuzz.seeds(wire, packetize)
POOL = [(d, authed) for data, authed in FRAMES for d in data]


def outcome(data: bytes, key: bytes | None) -> str:
    try:
        dg = wire.parse(data, key)
        (coded if dg.descriptor.entropy else packetize_module).check_payload(dg)
    except WireError as exc:
        return exc.reason
    return "ok"


def invariants(r: Reassembler) -> None:
    c = r.counters
    assert c.datagrams == c.accepted + c.duplicates + c.late + c.malformed
    assert c.malformed == sum(c.malformed_by_reason.values())
    assert c.evicted_frames == sum(c.evicted_by_reason.values())
    assert r.pending_frames <= r.max_frames and r.buffered_bytes <= r.max_bytes


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid datagram with fields set to drawn values, bytes changed, cut or extended; the crc
    (and, sometimes, the tag) resealed so the mutation reaches the checks behind them."""
    base, authed = draw(st.sampled_from(POOL))
    buf = bytearray(base)
    for offset, fmt in draw(st.lists(st.sampled_from(fuzz.FIELDS), max_size=3)):
        if fmt == ">f":
            value = draw(st.floats(width=32))
        else:
            value = draw(st.integers(0, (1 << (8 * struct.calcsize(fmt))) - 1))
        struct.pack_into(fmt, buf, offset, value)
    for offset, value in draw(
        st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)), max_size=3)
    ):
        buf[offset] = value
    cut = draw(st.one_of(st.none(), st.integers(0, len(buf))))
    if cut is not None:
        buf = buf[:cut]
    buf += draw(st.binary(max_size=8))
    key = draw(st.sampled_from([None, fuzz.KEY])) if authed else None
    return (fuzz.reseal(buf, key) if draw(st.booleans()) else bytes(buf)), authed


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_parser_raises_only_wire_errors(sample: tuple[bytes, bool]) -> None:
    data, _ = sample
    for key in (None, fuzz.KEY):
        reason = outcome(data, key)
        assert reason == "ok" or reason.isidentifier()


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_only_keyed_and_resealed_datagrams_pass_the_keyed_parser(
    sample: tuple[bytes, bool],
) -> None:
    data, _ = sample
    if outcome(data, fuzz.KEY) == "ok":
        dg = wire.parse(data, fuzz.KEY)
        assert dg.descriptor.authenticated
        assert wire.encode(dg, fuzz.KEY) == data  # nothing the tag does not cover got through


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(mutated(), st.sampled_from([0.0, 1e-3, 0.3])), max_size=60))
def test_receiver_counts_every_datagram_in_one_bucket(arrivals: list) -> None:
    receivers = [
        Reassembler(max_frames=4, max_stream_frames=2, recent=8, max_streams=2),
        Reassembler(max_frames=4, max_stream_frames=2, recent=8, key=fuzz.KEY),
    ]
    now = 0.0
    for (data, _), step in arrivals:
        now += step
        for r in receivers:
            r.ingest(data, now)
            invariants(r)
    for r in receivers:
        r.flush()
        invariants(r)


def test_seeded_mutation_run() -> None:
    """The fuzz script's engine, scaled down (scripts/fuzz_receiver.py runs 10**6)."""
    result = fuzz.run_seeded(50_000, seed=3)
    assert result["ok"], result["first_exception"]
    assert result["exceptions"] == 0 and result["caps_held"] and result["identity_holds"]
    assert set(result["mutations"]) == {
        "random", "flip", "field", "truncate", "extend", "splice", "replay", "fresh", "burst"
    }  # fmt: skip
    open_, keyed = result["receivers"]["open"], result["receivers"]["keyed"]
    for reasons in (open_["malformed_by_reason"], keyed["malformed_by_reason"]):
        assert {"truncated", "bad_magic", "checksum", "bad_field", "payload_length"} <= set(reasons)
    assert {"auth", "unauthenticated", "replay"} <= set(keyed["malformed_by_reason"])
    assert "auth_no_key" in open_["malformed_by_reason"]
    for counts in (open_, keyed):
        assert counts["frames_complete"] > 0 and counts["accepted"] > 0
    assert open_["evicted_by_reason"]


def test_seeded_run_is_reproducible() -> None:
    a, b = fuzz.run_seeded(2_000, seed=5), fuzz.run_seeded(2_000, seed=5)
    assert a["receivers"] == b["receivers"]


CORPUS_FILES = sorted(CORPUS.glob("*.bin"))


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 40


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.stem)
def test_corpus(path: Path) -> None:
    """File names say what the open or the keyed parser made of them when they were written."""
    receiver, expected = path.stem.split("-")[:2]
    data = path.read_bytes()
    assert outcome(data, fuzz.KEY if receiver == "keyed" else None) == expected
    r = Reassembler(key=fuzz.KEY if receiver == "keyed" else None)
    r.ingest(data, 0.0)
    invariants(r)
