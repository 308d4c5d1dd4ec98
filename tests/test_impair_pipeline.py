"""The Impairment pipeline: delay, reorder, duplicate, corrupt, rate, slot, limit, seeds, set_spec.

Frequencies are checked against 5 binomial standard errors (independent draws, fixed seed);
rate and slot checks are exact arithmetic on release times, not timings.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.impair import Emission, Fate, Impairment, ImpairSpec, parse_spec
from semnet.core.impair.dist import DIST_SCALE, table
from semnet.core.impair.queue import packet_time_ns
from semnet.core.impair.spec import Rate

MS = 1e-3


def feed(imp: Impairment, n: int, gap: float = MS, size: int = 100) -> list[tuple[list, Fate]]:
    """n datagrams (distinct payloads) arriving every ``gap`` s; (emissions, fate) per datagram."""
    out = []
    for i in range(n):
        data = i.to_bytes(4, "big") * (size // 4)
        out.append((imp.process(data, i * gap), imp.last_fate))
    return out


def binomial_ok(hits: int, n: int, p: float) -> bool:
    return abs(hits / n - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_no_impairment_passes_everything_at_once() -> None:
    imp = Impairment(ImpairSpec(), 0)
    assert imp.last_fate is None
    assert imp.process(b"abc", 5.0) == [Emission(5.0, b"abc")]
    assert imp.last_fate == Fate(0, "pass", 0.0)


def test_fixed_delay() -> None:
    imp = Impairment(parse_spec("delay 20ms"), 0)
    for i, (emissions, fate) in enumerate(feed(imp, 100)):
        assert [e.release_at for e in emissions] == [pytest.approx(i * MS + 0.02)]
        assert fate.action == "pass" and fate.delay == pytest.approx(0.02)


@pytest.mark.parametrize("dist", ["uniform", "normal", "pareto", "paretonormal"])
def test_jitter_distribution_mean_and_spread(dist: str) -> None:
    n, mu, sigma = 40_000, 0.1, 0.01
    imp = Impairment(parse_spec(f"delay 100ms 10ms distribution {dist}"), 5)
    delays = np.array([fate.delay for _, fate in feed(imp, n, gap=1.0)])
    if dist == "uniform":  # netem: mu - sigma + rnd % (2 sigma), so [mu - sigma, mu + sigma)
        mean, std = mu, 2 * sigma / math.sqrt(12)
        assert delays.min() >= mu - sigma and delays.max() < mu + sigma
    else:  # the table is the distribution, in units of sigma / 8192
        t = np.array(table(dist), dtype=float) / DIST_SCALE
        mean, std = mu + sigma * t.mean(), sigma * t.std()
    assert abs(delays.mean() - mean) <= 5 * std / math.sqrt(n)
    assert delays.std() == pytest.approx(std, rel=0.05)


@pytest.mark.parametrize("name", ["normal", "pareto", "paretonormal"])
def test_tables_equal_iproute2s(name: str) -> None:
    shipped = Path(f"/usr/lib/x86_64-linux-gnu/tc/{name}.dist")
    if not shipped.exists():
        pytest.skip("iproute2's distribution tables are not installed")
    words = [
        w
        for line in shipped.read_text().splitlines()
        if not line.startswith("#")
        for w in line.split()
    ]
    assert table(name) == tuple(map(int, words))


def test_jitter_reorders_unless_inorder() -> None:
    for spec, reorders in (("delay 10ms 8ms", True), ("delay 10ms 8ms inorder", False)):
        releases = [
            e.release_at for ems, _ in feed(Impairment(parse_spec(spec), 1), 2000) for e in ems
        ]
        assert (np.diff(releases) < 0).any() == reorders


def test_reorder_gap_follows_netem() -> None:
    # tc-netem(8): with "delay 10ms reorder 25% 50% gap 5" the first 4 packets are delayed, then
    # each is sent at once with probability 25%; after one is, the next 4 are delayed again.
    fates = [
        f for _, f in feed(Impairment(parse_spec("delay 10ms reorder 25% 50% gap 5"), 2), 20_000)
    ]
    sent_now = [f.ordinal for f in fates if "+reorder" in f.action]
    assert sent_now and sent_now[0] >= 4
    assert min(np.diff(sent_now)) >= 5
    assert all(f.delay == 0 for f in fates if "+reorder" in f.action)
    assert all(f.delay == pytest.approx(0.01) for f in fates if "+reorder" not in f.action)


def test_reorder_probability_on_eligible_packets() -> None:
    fates = [f for _, f in feed(Impairment(parse_spec("delay 10ms reorder 25% gap 5"), 4), 40_000)]
    eligible = hits = 0
    since = 0  # packets delayed since the last reordered one
    for fate in fates:
        if since >= 4:
            eligible += 1
        if "+reorder" in fate.action:
            assert since >= 4
            hits += 1
            since = 0
        else:
            since += 1
    assert binomial_ok(hits, eligible, 0.25)


def test_reorder_100_percent_is_every_gapth_packet() -> None:
    fates = [f for _, f in feed(Impairment(parse_spec("delay 10ms reorder 100% gap 5"), 0), 100)]
    assert [f.ordinal for f in fates if "+reorder" in f.action] == list(range(4, 100, 5))


def test_duplicate_frequency_and_copies() -> None:
    n = 40_000
    imp = Impairment(parse_spec("duplicate 10%"), 3)
    results = feed(imp, n)
    dups = [(ems, f) for ems, f in results if f.action == "pass+duplicate"]
    assert binomial_ok(len(dups), n, 0.10)
    assert all(len(ems) == 2 and ems[0].data == ems[1].data for ems, _ in dups)
    assert imp.counters.duplicated == len(dups)


def test_corrupt_flips_exactly_the_recorded_bit() -> None:
    n = 40_000
    imp = Impairment(parse_spec("corrupt 10%"), 8)
    corrupted = 0
    for i in range(n):
        data = bytes((i + k) % 256 for k in range(64))
        (emission,) = imp.process(data, i * MS)
        fate = imp.last_fate
        diff = int.from_bytes(
            bytes(a ^ b for a, b in zip(data, emission.data, strict=True)), "little"
        )
        if fate.action == "pass+corrupt":
            corrupted += 1
            assert diff == 1 << fate.bit  # one bit, the recorded one (little-endian bit index)
        else:
            assert diff == 0 and fate.bit == -1
    assert binomial_ok(corrupted, n, 0.10)
    assert imp.counters.corrupted == corrupted
    for i in range(100):  # an empty datagram has no bit to flip
        assert imp.process(b"", i) == [Emission(i, b"")] and imp.last_fate.bit == -1


def test_rate_throughput_and_packet_time() -> None:
    # offered 1200 B / 1 ms = 9.6 Mbit/s into a 1 Mbit/s link with room to queue
    imp = Impairment(parse_spec("rate 1mbit limit 100000"), 0)
    n, size = 5000, 1200
    releases = [e.release_at for ems, _ in feed(imp, n, size=size) for e in ems]
    throughput = (n - 1) * size * 8 / (releases[-1] - releases[0])
    assert throughput == pytest.approx(1e6, rel=0.02)
    assert np.all(np.diff(releases) > 0)


def test_rate_overhead_and_cells_like_the_man_page() -> None:
    # tc-netem(8): a 50-byte packet on ATM (48-byte cells, 5 bytes per cell) takes 106 bytes
    atm = Rate(bytes_per_s=1_000_000, packet_overhead=0, cell_size=48, cell_overhead=5)
    assert packet_time_ns(50, atm) == 106_000
    assert packet_time_ns(1000, Rate(1_000_000, packet_overhead=-14)) == 986_000


def test_rate_idle_link_adds_only_serialisation() -> None:
    imp = Impairment(parse_spec("delay 5ms rate 8mbit"), 0)  # 1 MB/s: 1000 B take 1 ms
    (emission,) = imp.process(b"x" * 1000, 10.0)
    assert emission.release_at == pytest.approx(10.006)


def test_slot_releases_in_bursts_of_limited_packets() -> None:
    imp = Impairment(parse_spec("slot 10ms packets 3 limit 100000"), 0)
    releases = [round(e.release_at / MS) for ems, _ in feed(imp, 300) for e in ems]
    arrivals = range(300)
    assert all(r >= a for r, a in zip(releases, arrivals, strict=True))
    assert all(r % 10 == 0 for r in releases)
    counts = np.unique(releases, return_counts=True)[1]
    assert counts.max() == 3


def test_slot_byte_budget() -> None:
    imp = Impairment(parse_spec("slot 5ms bytes 3000 limit 100000"), 0)
    releases = [round(e.release_at / MS) for ems, _ in feed(imp, 90, size=1200) for e in ems]
    # budget 3000 B: 1200, 2400, then 3600 exhausts it, so 3 packets per slot
    assert np.unique(releases, return_counts=True)[1].max() == 3


def test_limit_tail_drops_and_recovers() -> None:
    imp = Impairment(parse_spec("delay 1s limit 10"), 0)
    fates = [f.action for _, f in feed(imp, 20)]
    assert fates == ["pass"] * 10 + ["drop:limit"] * 10
    assert imp.queue_depth(0.5) == 10 and imp.queue_depth(1.5) == 0
    imp.process(b"later", 2.0)
    assert imp.last_fate.action == "pass"
    assert imp.counters.dropped_by_reason == {"loss": 0, "limit": 10}


def test_same_seed_same_result_and_different_seed_differs() -> None:
    spec = parse_spec(
        "delay 10ms 5ms 25% distribution paretonormal loss gemodel 5% 30% 90% 1% "
        "duplicate 5% corrupt 5% rate 20mbit slot 1ms 2ms"
    )
    runs = [feed(Impairment(spec, seed), 3000) for seed in (11, 11, 12)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_set_spec_applies_from_the_next_datagram_and_keeps_the_stream() -> None:
    # "loss 50%" takes one draw per packet and a delay without jitter takes none, so a run that
    # switches to "loss 50% delay 30ms" halfway must make the same loss decisions as one that
    # never switched: the random stream carries over.
    steady = Impairment(parse_spec("loss 50%"), 21)
    changed = Impairment(parse_spec("loss 50%"), 21)
    for i in range(200):
        if i == 100:
            changed.set_spec(parse_spec("loss 50% delay 30ms"))
        now = i * MS
        expected, got = steady.process(b"x", now), changed.process(b"x", now)
        assert bool(got) == bool(expected)
        if got:
            assert got[0].release_at == pytest.approx(now + (0.03 if i >= 100 else 0.0))
    assert changed.counters.received == 200


def test_accounting_closes() -> None:
    spec = parse_spec(
        "limit 50 delay 5ms 3ms loss gemodel 5% 30% duplicate 10% corrupt 5% "
        "reorder 10% gap 3 rate 5mbit"
    )
    imp = Impairment(spec, 9)
    results = feed(imp, 20_000, gap=0.2 * MS, size=400)  # 16 Mbit/s offered
    c = imp.counters
    assert sum(len(ems) for ems, _ in results) == c.emitted
    assert c.emitted == c.received + c.duplicated - c.dropped
    assert c.dropped_by_reason["limit"] > 0 and c.reordered > 0
    actions = [f.action for _, f in results]
    assert c.duplicated == sum("+duplicate" in a for a in actions)
    assert c.reordered == sum("+reorder" in a for a in actions)


SPECS = [
    "delay 10ms 9ms",
    "delay 10ms 30ms distribution pareto",
    "delay 2ms reorder 50% gap 2 duplicate 20%",
    "rate 1mbit 28 slot 1ms 3ms bytes 4k limit 20",
    "slot distribution normal 2ms 1ms packets 2",
]


@settings(max_examples=30, deadline=None)
@given(
    spec=st.sampled_from(SPECS),
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.floats(0, 0.01), min_size=1, max_size=60),
)
def test_release_never_precedes_arrival(spec: str, seed: int, gaps: list[float]) -> None:
    imp = Impairment(parse_spec(spec), seed)
    now = 100.0
    for gap in gaps:
        now += gap
        for emission in imp.process(b"payload", now):
            assert emission.release_at >= now
