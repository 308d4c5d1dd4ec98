"""Impairment specs: tc's syntax and defaults, errors that name the bad token, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semnet.core.impair import (
    Chance,
    Delay,
    ImpairSpec,
    LossBurst,
    LossGemodel,
    LossState,
    Rate,
    Reorder,
    Slot,
    format_spec,
    parse_spec,
    spec_from_mapping,
)
from semnet.core.impair.mapping import patch_spec
from semnet.core.impair.units import (
    MAX_TIME_NS,
    parse_percent,
    parse_rate,
    parse_size,
    parse_time,
)
from semnet.errors import ConfigError

MS = 1_000_000

# tc-netem(8) EXAMPLES, the examples in its option descriptions, and the netem wiki's.
TC_EXAMPLES = [
    "tc qdisc add dev eth0 root netem rate 5kbit 20 100 5",
    "delay 10ms reorder 25% 50% gap 5",
    "delay 10ms reorder 25% 50%",
    "delay 100ms",
    "delay 100ms 10ms",
    "delay 100ms 10ms 25%",
    "delay 100ms 20ms distribution normal",
    "loss 0.1%",
    "loss 0.3% 25%",
    "loss random 1%",
    "loss state 1%",
    "loss state 1% 30% 5% 10% 0.1%",
    "loss gemodel 1%",
    "loss gemodel 1% 10% 70% 0.1%",
    "loss gemodel 1% 30%",
    "duplicate 1%",
    "corrupt 0.1%",
    "delay 10ms reorder 25% 50%",
    "delay 100ms 75ms",
    "rate 256kbit",
    "delay 100ms rate 256kbit",
    "slot 800us 1ms packets 10",
    "slot distribution pareto 1ms 100us bytes 64k",
    "limit 2000 delay 10ms",
    "tc qdisc change dev eth0 root netem delay 100ms 10ms 25% loss 0.3% duplicate 1% seed 7",
]


@pytest.mark.parametrize("text", TC_EXAMPLES)
def test_accepts_tc_examples_and_round_trips(text: str) -> None:
    spec = parse_spec(text)
    assert parse_spec(format_spec(spec)) == spec


def test_examples_mean_what_tc_means() -> None:
    assert parse_spec("tc qdisc add dev eth0 root netem rate 5kbit 20 100 5").rate == Rate(
        625, 20, 100, 5
    )
    assert parse_spec("delay 10ms reorder 25% 50% gap 5").reorder == Reorder(25.0, 50.0, 5)
    assert parse_spec("delay 10ms reorder 25%").reorder.gap == 1  # tc's default gap
    assert parse_spec("delay 100ms 20ms distribution normal").delay == Delay(
        100 * MS, 20 * MS, 0.0, "normal"
    )
    assert parse_spec("loss 0.3% 25%").loss == Chance(0.3, 25.0)
    assert parse_spec("loss state 1%").loss == LossState(1.0, 99.0, 0.0, 100.0, 0.0)
    assert parse_spec("loss gemodel 1%").loss == LossGemodel(1.0, 99.0, 100.0, 0.0)
    assert parse_spec("loss gemodel 1% 30% 70%").loss == LossGemodel(1.0, 30.0, 70.0, 0.0)
    assert parse_spec("slot 1ms").slot == Slot(min_ns=MS, max_ns=MS)
    assert parse_spec("").limit == 1000


def test_tc_abbreviations_and_aliases() -> None:
    assert parse_spec("del 5ms") == parse_spec("latency 5ms") == parse_spec("d 5ms")
    assert parse_spec("drop 1%") == parse_spec("loss 1%") == parse_spec("lo 1%")
    assert parse_spec("dup 1%").duplicate == Chance(1.0)
    assert parse_spec("slot 1ms pack 3 byt 2k").slot == Slot(MS, MS, packets=3, bytes=2048)


def test_optional_arguments_need_a_leading_digit() -> None:
    # tc's NEXT_IS_NUMBER: ".5%" is not taken as the correlation, so it is an unknown option
    with pytest.raises(ConfigError, match=r"'\.5%'"):
        parse_spec("loss 1% .5%")


@pytest.mark.parametrize(
    "text, named",
    [
        ("loss gemodel 130%", "loss gemodel: '130%' is not a percentage in 0..100%"),
        ("loss state 1% 120%", "'120%'"),
        ("loss random -1%", "'-1%'"),
        ("loss 5% 1%x", "'1%x'"),
        ("loss bursty 1%", "'bursty'"),
        ("loss burst 60% 1", "rate 60.0% is unreachable"),
        ("loss burst 5% 3 max 2", "max 2 is below"),
        ("loss 1% loss 2%", "loss: given twice"),
        ("delay 10xs", "delay: '10xs'"),
        ("delay 10ms 1parsec", "delay jitter: '1parsec'"),
        ("delay", "delay: missing value"),
        ("delay 10ms 5ms 200%", "delay correlation: '200%'"),
        ("delay 10ms 5ms distribution gaussian", "distribution: 'gaussian'"),
        ("distribution normal delay 10ms", "distribution 'normal' needs a delay and a jitter"),
        ("distribution normal", "distribution: needs a delay"),
        ("reorder 10%", "reordering needs a delay"),
        ("gap 5 delay 1ms", "gap: specified without a reorder probability"),
        ("delay 1ms reorder 0% gap 5", "gap: specified without a reorder probability"),
        ("delay 1ms reorder 5% inorder", "inorder: contradicts reorder"),
        ("inorder", "inorder: needs a delay"),
        ("rate 50%", "rate: '50%'"),
        ("rate fast", "rate: 'fast'"),
        ("rate 7bit", "rate: '7bit' is below"),
        ("rate 1mbit 1.5", "rate: '1.5'"),
        ("slot 2ms 1ms", "max_delay '1ms' is below min_delay '2ms'"),
        ("slot sometimes", "slot: unknown parameter 'sometimes'"),
        ("slot distribution normal 1ms 0ms", "slot jitter: '0ms' is not positive"),
        ("slot 1ms packets many", "slot packets: 'many'"),
        ("limit lots", "limit: 'lots'"),
        ("limit 0", "limit: 0 is not in 1..4294967295"),
        ("limit 1e400", "limit: '1e400' is too large"),
        ("limit 5g", "limit: '5g' is above 4294967295"),
        ("delay 1e400s", "delay: '1e400s' is too large"),
        ("delay 1e290s", "delay: '1e290s' is above 3600s"),
        ("delay 3601s", "delay: '3601s' is above 3600s"),
        ("delay 10ms 1e400s", "delay jitter: '1e400s' is too large"),
        ("delay 10ms 2e9ms", "delay jitter: '2e9ms' is above 3600s"),
        ("rate 1e400bit", "rate: '1e400bit' is too large"),
        ("rate 1e300tbit", "rate: '1e300tbit' is above netem's 2**64-1 bytes/s"),
        ("slot 1e400s", "slot min_delay: '1e400s' is too large"),
        ("slot 1ms 1e290s", "slot max_delay: '1e290s' is above 3600s"),
        ("slot distribution normal 1e400s 1ms", "slot delay: '1e400s' is too large"),
        ("slot 1ms bytes 1e400", "slot bytes: '1e400' is too large"),
        ("loss burst 5% 1e400", "loss burst length: '1e400' is too large"),
        ("link awgn snr 1e400dB", "link snr: '1e400dB' is too large"),
        ("link awgn snr 10dB coderate 1e400", "link coderate: '1e400' is too large"),
        ("seed -3", "seed: '-3'"),
        ("ecn loss 1%", "ecn"),
        ("jitter 5ms", "unknown option 'jitter'"),
    ],
)
def test_rejects_bad_tokens_naming_them(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert named in str(info.value)


def test_units_follow_tc() -> None:
    assert (
        parse_time("20ms", "t") == parse_time("20msec", "t") == parse_time("0.02s", "t") == 20 * MS
    )
    assert parse_time("800us", "t") == parse_time("800USEC", "t") == 800_000
    assert parse_time("1500", "t") == 1500  # tc's get_time64: a bare number is nanoseconds
    assert (
        parse_percent("1", "p") == parse_percent("1%", "p") == 1.0
    )  # bare = percent, not a fraction
    assert parse_percent("0.1%", "p") == 0.1
    assert parse_rate("10mbit", "r") == 1_250_000
    assert parse_rate("1mbps", "r") == 1_000_000  # tc: "bps" is bytes per second
    assert parse_rate("1Kibit", "r") == 128 and parse_rate("8000", "r") == 1000
    assert parse_size("64k", "s") == 65536 and parse_size("1500", "s") == 1500


def test_mapping_matches_the_string_form() -> None:
    data = {
        "loss": {"gemodel": {"p": "1%", "r": "30%"}},
        "delay": {"time": "20ms", "jitter": "5ms", "distribution": "normal"},
    }
    assert spec_from_mapping(data) == parse_spec(
        "delay 20ms 5ms distribution normal loss gemodel 1% 30%"
    )
    fragments = {
        "limit": 50,
        "delay": "10ms 2ms 25% distribution pareto",
        "loss": "burst 5% 3 max 8",
        "reorder": "25% 50% gap 5",
        "rate": "10mbit -14",
        "seed": 3,
    }
    assert spec_from_mapping(fragments) == parse_spec(
        "limit 50 delay 10ms 2ms 25% distribution pareto loss burst 5% 3 max 8 "
        "reorder 25% 50% gap 5 rate 10mbit -14 seed 3"
    )
    fields = {
        "delay": {"time": "5ms", "inorder": True},
        "loss": {"state": {"p13": 2, "p31": "40%"}},
        "duplicate": {"percent": "1%", "correlation": "10%"},
        "corrupt": {"percent": 0.5},
        "rate": {"rate": "1mbit", "packet_overhead": 28, "cell_size": 48, "cell_overhead": 5},
        "slot": {
            "distribution": "normal",
            "delay": "2ms",
            "jitter": "1ms",
            "packets": 4,
            "bytes": "3k",
        },
    }
    assert spec_from_mapping(fields) == parse_spec(
        "delay 5ms inorder loss state 2% 40% duplicate 1% 10% corrupt 0.5% rate 1mbit 28 48 5 "
        "slot distribution normal 2ms 1ms packets 4 bytes 3k"
    )


@pytest.mark.parametrize(
    "data, named",
    [
        ({"jitter": "5ms"}, "unknown key 'jitter'"),
        ({"loss": {"gemodel": {"q": "1%"}}}, "loss.gemodel: unknown key 'q'"),
        ({"loss": {"gemodel": {"p": "130%"}}}, "loss.gemodel.p: '130%'"),
        ({"loss": {"random": {"percent": "1%"}, "state": {"p13": "1%"}}}, "exactly one"),
        ({"loss": {"burst": {"rate": "1%"}}}, "loss.burst: missing key 'length'"),
        ({"delay": {"time": 20}}, "delay.time: 20 needs a unit"),
        ({"delay": {"time": "1ms", "inorder": "yes"}}, "delay.inorder"),
        ({"delay": "10ms loss 5%"}, "also sets loss"),
        ({"rate": {"rate": "1mbit", "overhead": 3}}, "rate: unknown key 'overhead'"),
        ({"slot": {"min": "1ms", "packets": -1}}, "slot.packets"),
        ({"duplicate": 5}, "duplicate: expected a mapping or a netem string"),
        ({"limit": [1]}, "limit: [1]"),
        ({"limit": 0}, "limit: 0 is not in 1.."),
        ({"limit": float("inf")}, "limit: 'inf'"),
        ({"delay": {"time": "1e400s"}}, "delay.time: '1e400s' is too large"),
        ({"delay": {"time": 1e300}}, "delay.time: '1e+300' is above 3600s"),
        ({"delay": {"time": "10ms", "jitter": "2h"}}, "delay.jitter: '2h'"),
        ({"delay": "1e290s"}, "delay: '1e290s' is above 3600s"),
        ({"rate": {"rate": "1e400bit"}}, "rate.rate: '1e400bit' is too large"),
        ({"slot": {"min": "1e400s"}}, "slot.min: '1e400s' is too large"),
        ({"slot": {"min": "1ms", "bytes": "1e400"}}, "slot.bytes: '1e400' is too large"),
    ],
)
def test_mapping_errors_name_the_key(data: dict, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_mapping(data)
    assert named in str(info.value)


percent = st.floats(0, 100, allow_nan=False)
nanos = st.integers(0, 10**10)


@st.composite
def specs(draw: st.DrawFn) -> ImpairSpec:
    """Valid specs across every option (constraints tc or semnet enforces are respected)."""
    p13 = draw(percent)
    p31 = draw(st.floats(0, 100))
    losses = st.one_of(
        st.builds(Chance, percent, percent),
        st.builds(
            LossState,
            st.just(p13),
            st.just(p31),
            st.floats(0, 100 - p31),
            percent,
            st.floats(0, 100 - p13),
        ),
        st.builds(LossGemodel, percent, percent, percent, percent),
        st.builds(LossBurst, st.floats(0.01, 30), st.floats(1, 20), st.sampled_from([0, 20, 50])),
    )
    time_ns, jitter_ns = draw(nanos), draw(nanos)
    dists = ["uniform"] + (["normal", "pareto", "paretonormal"] if time_ns and jitter_ns else [])
    reorder = draw(
        st.none() | st.builds(Reorder, st.floats(0.001, 100), percent, st.integers(1, 99))
    )
    inorder = reorder is None and draw(st.booleans())
    low = draw(nanos)
    slots = st.one_of(
        st.builds(
            Slot,
            st.just(low),
            st.integers(low, low + 10**9),
            packets=st.integers(0, 99),
            bytes=st.integers(0, 99999),
        ),
        st.builds(
            Slot,
            distribution=st.sampled_from(["uniform", "normal"]),
            delay_ns=nanos,
            jitter_ns=st.integers(1, 10**9),
        ),
    )
    no_delay = reorder is None and not inorder and draw(st.booleans())
    return ImpairSpec(
        limit=draw(st.integers(1, 10**6)),
        delay=None
        if no_delay
        else Delay(
            max(time_ns, 1 if reorder else 0),
            jitter_ns,
            draw(percent),
            draw(st.sampled_from(dists)),
            inorder,
        ),
        loss=draw(st.none() | losses),
        duplicate=draw(st.none() | st.builds(Chance, percent, percent)),
        corrupt=draw(st.none() | st.builds(Chance, percent, percent)),
        reorder=reorder,
        rate=draw(
            st.none()
            | st.builds(
                Rate,
                st.integers(1, 10**10),
                st.integers(-100, 100),
                st.integers(0, 100),
                st.integers(-10, 10),
            )
        ),
        slot=draw(st.none() | slots),
        seed=draw(st.none() | st.integers(0, 2**64 - 1)),
    )


@settings(max_examples=300, deadline=None)
@given(specs())
def test_format_then_parse_is_identity(spec: ImpairSpec) -> None:
    assert parse_spec(format_spec(spec)) == spec


@pytest.mark.parametrize(
    "spec",
    [
        lambda: Delay(MAX_TIME_NS + 1),
        lambda: Delay(MS, MAX_TIME_NS + 1),
        lambda: Slot(min_ns=0, max_ns=MAX_TIME_NS + 1),
        lambda: Rate(2**64),
        lambda: ImpairSpec(limit=0),
    ],
)
def test_specs_built_directly_are_range_checked_too(spec) -> None:
    with pytest.raises(ConfigError):
        spec()


def test_the_longest_times_are_accepted() -> None:
    spec = parse_spec("delay 3600s 3600s slot 3600s 3600s limit 4294967295")
    assert spec.delay == Delay(MAX_TIME_NS, MAX_TIME_NS) and spec.limit == 2**32 - 1
    assert parse_spec(format_spec(spec)) == spec


BASE = parse_spec("limit 50 delay 10ms 5ms distribution normal loss random 5% seed 3")


@pytest.mark.parametrize(
    "patch, expected",
    [
        ("loss gemodel 1%", "limit 50 delay 10ms 5ms distribution normal loss gemodel 1%"),
        ({"loss": None, "limit": None}, "delay 10ms 5ms distribution normal"),
        ({"delay": {"time": "20ms"}}, "limit 50 delay 20ms loss 5%"),  # delay's options go too
        ("distribution pareto", "limit 50 delay 10ms 5ms distribution pareto loss 5%"),
        (
            "reorder 5% gap 2",
            "limit 50 delay 10ms 5ms distribution normal loss 5% reorder 5% gap 2",
        ),
        ("seed 9", "limit 50 delay 10ms 5ms distribution normal loss 5% seed 9"),
        ("", "limit 50 delay 10ms 5ms distribution normal loss 5%"),  # seed is not kept
    ],
)
def test_a_patch_replaces_only_the_options_it_names(patch, expected) -> None:
    assert patch_spec(BASE, patch) == parse_spec(expected)


@pytest.mark.parametrize(
    "patch, named",
    [
        ({"delay": None}, "reorder"),  # the whole result is checked: reorder needs a delay
        ({"jitter": "1ms"}, "unknown key 'jitter'"),
        ("loss 130%", "'130%'"),
        ("delay 1e400s", "'1e400s' is too large"),
    ],
)
def test_a_patch_that_breaks_the_spec_is_refused(patch, named) -> None:
    base = parse_spec("delay 10ms reorder 5%")
    with pytest.raises(ConfigError, match=named):
        patch_spec(base, patch)
