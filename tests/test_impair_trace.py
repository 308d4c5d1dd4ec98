"""Fate traces: record then replay gives the same fates; measured 0/1 traces replay too."""

from __future__ import annotations

import io

import pytest

from semnet.core.impair import (
    Fate,
    FateRecorder,
    Impairment,
    ReplayImpairment,
    format_fate,
    load_trace,
    parse_spec,
    parse_trace,
)
from semnet.errors import ConfigError

SPEC = (
    "limit 30 delay 20ms 5ms 25% distribution normal loss gemodel 3% 30% 90% 0.5% "
    "duplicate 5% corrupt 5% reorder 5% gap 3 rate 10mbit 28 slot 100us 300us"
)


def datagram(i: int) -> bytes:
    return bytes((i * 7 + k) % 256 for k in range(120))


def run(imp: Impairment | ReplayImpairment, n: int) -> tuple[list, list[Fate]]:
    emissions, fates = [], []
    for i in range(n):
        emissions.append(imp.process(datagram(i), 3.0 + i * 0.1e-3))
        fates.append(imp.last_fate)
    return emissions, fates


def test_record_then_replay_is_identical() -> None:
    n = 5000
    imp = Impairment(parse_spec(SPEC), 17)
    stream = io.StringIO()
    recorder = FateRecorder(stream)
    emissions, fates = [], []
    for i in range(n):
        emissions.append(imp.process(datagram(i), 3.0 + i * 0.1e-3))
        fates.append(imp.last_fate)
        recorder.record(imp.last_fate)
    actions = {f.action for f in fates}
    assert {"drop:loss", "drop:limit", "pass+duplicate", "pass+corrupt", "pass+reorder"} <= actions
    replay = ReplayImpairment(parse_trace(io.StringIO(stream.getvalue())))
    assert run(replay, n) == (emissions, fates)
    assert replay.counters == imp.counters


def test_fate_lines_are_documented_format() -> None:
    fate = Fate(3, "pass+duplicate+corrupt", 0.0205, 1234, 0.0213, -1)
    assert format_fate(fate) == "3 pass+duplicate+corrupt 20.500000 bit=1234 dup=21.300000"
    assert parse_trace([format_fate(fate)]) == [fate]
    assert format_fate(Fate(4, "drop:loss")) == "4 drop:loss 0.000000"


def test_measured_trace(tmp_path) -> None:
    path = tmp_path / "loss.trace"
    path.write_text("# measured on a wifi link\n0\n1\n0 12.5ms\n\n0 7  # bare = ms\n1\n")
    fates = load_trace(path)
    assert [f.action for f in fates] == ["pass", "drop:loss", "pass", "pass", "drop:loss"]
    assert [f.delay for f in fates] == [0.0, 0.0, 0.0125, 0.007, 0.0]
    replay = ReplayImpairment(fates)
    out = []
    for i in range(7):
        out.append(replay.process(b"d", 10.0 + i))
        if i == 2:  # held 12.5 ms
            assert replay.queue_depth(12.001) == 1 and replay.queue_depth(12.013) == 0
    assert [len(e) for e in out] == [1, 0, 1, 1, 0, 1, 0]  # loops by default
    assert out[2][0].release_at == pytest.approx(12.0125)
    assert replay.counters.dropped_by_reason["loss"] == 3


def test_replay_without_loop_passes_after_the_end() -> None:
    replay = ReplayImpairment(parse_trace(["1"]), loop=False)
    assert replay.process(b"a", 0.0) == []
    assert len(replay.process(b"b", 1.0)) == 1 and replay.last_fate.action == "pass"


def test_replay_wraps_a_recorded_bit_into_a_shorter_datagram() -> None:
    replay = ReplayImpairment([Fate(0, "pass+corrupt", 0.0, 17)])
    (emission,) = replay.process(b"\x00", 0.0)  # 8 bits: bit 17 -> bit 1
    assert emission.data == b"\x02" and replay.last_fate.bit == 1


@pytest.mark.parametrize(
    "lines, named",
    [
        (["0 pass 1.0", "2 pass 1.0"], "trace line 2: ordinal 2 does not follow 0"),
        (["0 pass 1.0", "1"], "trace line 2: mixes"),
        (["0 fly 1.0"], "trace line 1: expected '0' or '1'"),
        (["0 pass+teleport 1.0"], "unknown action 'pass+teleport'"),
        (["0 pass+duplicate 1.0"], "'+duplicate' and dup="),
        (["0 pass 1.0 bit=3"], "'+corrupt' and bit="),
        (["0 pass 1.0 colour=red"], "unexpected field 'colour=red'"),
        (["2"], "trace line 1: expected '0' or '1'"),
        (["0 soon"], "trace line 1 delay: 'soon'"),
        (["0 1e400"], "trace line 1 delay: '1e400' is too large"),
        (["0 5000000"], "trace line 1 delay: '5000000' ms is above 3600s"),
        (["0 1e400s"], "trace line 1 delay: '1e400s' is too large"),
        (["0 pass 1e300"], "trace line 1 delay: '1e300' ms is above 3600s"),
        (["0 pass+duplicate 1.0 dup=1e400"], "trace line 1 dup: '1e400' is too large"),
    ],
)
def test_bad_traces_name_the_line(lines: list[str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_trace(lines)
    assert named in str(info.value)


def test_empty_trace_is_refused() -> None:
    with pytest.raises(ConfigError, match="no records"):
        ReplayImpairment(parse_trace(["# nothing"]))


def test_replay_holds_at_most_limit_copies() -> None:
    replay = ReplayImpairment(parse_trace(["0 1000s"]), limit=5)
    out = [replay.process(b"d", 1.0 + i) for i in range(8)]
    assert [len(e) for e in out] == [1] * 5 + [0] * 3
    assert replay.last_fate.action == "drop:limit"
    assert replay.queue_depth(9.0) == 5 and replay.counters.dropped_by_reason["limit"] == 3


def test_a_replay_has_no_link_stage() -> None:
    replay = ReplayImpairment(parse_trace(["0"]))
    replay.feed_frame([b"x"])  # as Impairment without a link: nothing to queue
    assert replay.link is None and len(replay.process(b"x", 0.0)) == 1
