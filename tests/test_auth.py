"""Authentication: datagram tags, the replay window, signed control requests, key loading, and
an authenticated testbed refusing spoofed, altered, unsigned and replayed traffic."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from semnet.client import request
from semnet.config import load
from semnet.core import wire
from semnet.core.auth import (
    REQUEST_REFUSALS,
    TAG_SIZE,
    Replay,
    ReplayWindow,
    RequestVerifier,
    sign_request,
)
from semnet.core.packetize import check_payload, layout, packetize
from semnet.core.reassembly import Reassembler
from semnet.core.seqnum import SEQ_MOD, seq_add
from semnet.daemons.config import ReceiverConfig, SenderConfig
from semnet.daemons.service import control_app, metrics_route
from semnet.errors import ConfigError, SemnetError, WireError
from semnet.testbed import LocalTestbed, by_label, metric_totals

KEY = b"semnet-test-key-0123456789abcdef"
FIXTURES = Path(__file__).parent / "fixtures" / "wire"


def descriptor(authenticated: bool = True, size: int = 1200) -> wire.FrameDescriptor:
    return wire.FrameDescriptor(
        codec_id=1,
        image_h=64,
        image_w=64,
        latent=(8, 16, 16),
        quant=wire.QuantSpec(wire.QuantKind.UNIFORM, 5, -1.0, 1.0),
        partition=wire.PartitionSpec(wire.Scheme.CHANNEL),
        interleave=True,
        seed=9,
        datagram_size=size,
        authenticated=authenticated,
    )


def frame(stream=1, number=1, first_seq=0, desc=None, key=KEY) -> list[bytes]:
    desc = desc or descriptor(key is not None)
    q = np.random.default_rng(number).integers(0, 32, size=desc.latent, dtype=np.uint16)
    return packetize(q, desc, stream, number, first_seq, key)


def reseal(data: bytes | bytearray) -> bytes:
    """Fix the crc only: what an attacker who knows the format but not the key can do."""
    buf = bytearray(data)
    buf[18:22] = b"\0\0\0\0"
    struct.pack_into(">I", buf, 18, zlib.crc32(buf))
    return bytes(buf)


def reason(data: bytes, key: bytes | None = KEY) -> str:
    with pytest.raises(WireError) as info:
        check_payload(wire.parse(data, key))
    return info.value.reason


# --- wire ------------------------------------------------------------------------------------


def test_round_trip_and_layout() -> None:
    data = frame()
    for d in data:
        dg = wire.parse(d, KEY)
        check_payload(dg)
        assert dg.descriptor.authenticated and len(d) <= 1200
        assert d[2] & wire.FLAG_AUTHENTICATED
        assert wire.encode(dg, KEY) == d
    assert len(data[0]) == 1200  # a full datagram still fits: the tag came out of the payload


@pytest.mark.parametrize("size", [wire.HEADER_SIZE + TAG_SIZE + 3, 100, 576, 1200, 9000])
@pytest.mark.parametrize("bits", [1, 5, 8, 16])
def test_capacity_leaves_room_for_the_tag(size: int, bits: int) -> None:
    plain = replace(descriptor(False, size), quant=wire.QuantSpec(wire.QuantKind.ROUND, bits, 0, 1))
    authed = replace(plain, authenticated=True)
    assert authed.per_datagram == (size - wire.HEADER_SIZE - TAG_SIZE) * 8 // bits
    assert authed.per_datagram < plain.per_datagram
    q = np.zeros(authed.latent, dtype=np.uint16)
    data = packetize(q, authed, 0, 0, 0, KEY)
    assert len(data) == layout(authed).count
    assert max(map(len, data)) <= size


def test_datagram_size_must_hold_header_tag_and_a_value() -> None:
    with pytest.raises(ConfigError, match="datagram_size"):
        descriptor(True, wire.HEADER_SIZE + TAG_SIZE + 2)
    descriptor(False, wire.HEADER_SIZE + TAG_SIZE + 2)


def test_encode_needs_the_key_exactly_when_authenticated() -> None:
    dg = wire.parse(frame()[0], KEY)
    with pytest.raises(ConfigError):
        wire.encode(dg)
    with pytest.raises(ConfigError):
        wire.encode(replace(dg, descriptor=descriptor(False)), KEY)


def test_spoofed_modified_and_stripped_datagrams_are_refused() -> None:
    data = frame()[1]
    assert reason(data, b"another-key-0123456789abcdef") == "auth"
    for offset in (4, 10, 14, 30, 60, len(data) - TAG_SIZE - 1, len(data) - 1):
        buf = bytearray(data)
        buf[offset] ^= 0x01
        assert reason(reseal(buf)) == "auth", offset
    stripped = bytearray(data[:-TAG_SIZE])
    stripped[2] &= ~wire.FLAG_AUTHENTICATED
    assert reason(reseal(stripped)) == "unauthenticated"
    short = bytearray(data[: wire.HEADER_SIZE + 3])
    assert reason(reseal(short)) == "truncated"
    flipped = bytearray(data)
    flipped[100] ^= 0x10  # corruption on the way, crc not fixed: still a checksum error
    assert reason(bytes(flipped)) == "checksum"


def test_key_and_no_key_refuse_each_other() -> None:
    assert reason(frame()[0], None) == "auth_no_key"
    assert reason(frame(key=None)[0], KEY) == "unauthenticated"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_change_without_the_key_is_refused(data: st.DataObject) -> None:
    """Change any bytes but the crc, fix the crc: parse with the key never succeeds."""
    original = frame()[1]
    buf = bytearray(original)
    for offset in data.draw(st.sets(st.integers(0, len(buf) - 1), min_size=1, max_size=4)):
        if not 18 <= offset < 22:
            buf[offset] = data.draw(st.integers(0, 255).filter(lambda v, o=offset: v != buf[o]))
    if bytes(buf[:18] + buf[22:]) == original[:18] + original[22:]:
        return
    with pytest.raises(WireError):
        wire.parse(reseal(buf), KEY)


AUTH_FIXTURES = {
    "auth_valid.bin": None,
    "auth_forged.bin": "auth",
    "auth_stripped.bin": "unauthenticated",
}


def test_auth_fixtures() -> None:
    dg = wire.parse((FIXTURES / "auth_valid.bin").read_bytes(), KEY)
    assert (dg.stream, dg.frame, dg.index, dg.descriptor.authenticated) == (1, 1, 0, True)
    assert reason((FIXTURES / "auth_valid.bin").read_bytes(), None) == "auth_no_key"
    for name, expected in AUTH_FIXTURES.items():
        if expected:
            assert reason((FIXTURES / name).read_bytes()) == expected


# --- replay window ---------------------------------------------------------------------------


def test_replay_window() -> None:
    w = ReplayWindow(size=8)
    assert [w.check(s) for s in (100, 102, 101, 102)] == [
        Replay.NEW,
        Replay.NEW,
        Replay.NEW,
        Replay.DUPLICATE,
    ]
    assert w.check(95) is Replay.NEW  # behind, inside the window, never seen
    assert w.check(94) is Replay.OLD  # 8 behind: cannot be vouched for
    assert w.check(100 + 2**30) is Replay.NEW  # an authentic jump of any size is taken at once
    assert w.check(102) is Replay.OLD


def test_replay_window_across_the_wrap() -> None:
    w = ReplayWindow(size=16)
    for s in range(SEQ_MOD - 5, SEQ_MOD + 5):
        assert w.check(s % SEQ_MOD) is Replay.NEW
    assert w.check(SEQ_MOD - 3) is Replay.DUPLICATE
    assert w.check(SEQ_MOD - 20) is Replay.OLD
    w.restart(7)
    assert w.check(7) is Replay.NEW and w.check(3) is Replay.NEW


# --- reassembler with a key ------------------------------------------------------------------


def test_keyed_reassembler_counts_every_refusal_by_reason() -> None:
    r = Reassembler(key=KEY)
    (done,) = [f for d in frame(first_seq=SEQ_MOD - 2) for f in r.ingest(d, 0.0)]
    assert done.complete
    old = frame(number=2, first_seq=seq_add(SEQ_MOD - 2, 4))
    r.ingest(old[0], 0.0)
    for n in range(3, 300):  # the stream moves on, far past the window
        for d in frame(number=n, first_seq=seq_add(SEQ_MOD + 2, 4 * n)):
            r.ingest(d, 0.0)
    r.ingest(old[1], 5.0)  # authentic, never seen, but older than the window: a replay
    r.ingest(old[0], 5.0)  # and one seen, its frame delivered meanwhile (deadline)
    r.ingest(frame(key=None)[0], 0.0)
    r.ingest(reseal(bytearray(frame(number=400)[0][:-1]) + b"x"), 0.0)
    c = r.counters
    assert c.malformed_by_reason == {"replay": 2, "unauthenticated": 1, "auth": 1}
    assert c.datagrams == c.accepted + c.duplicates + c.late + c.malformed


def test_recent_copy_is_a_duplicate_not_a_replay() -> None:
    r = Reassembler(key=KEY)
    data = frame()
    r.ingest(data[0], 0.0)
    r.ingest(data[0], 0.0)
    assert (r.counters.duplicates, r.counters.malformed) == (1, 0)


def test_announced_restart_is_accepted_not_replayed() -> None:
    """A restarted sender whose numbers start behind the old ones announces its first frame on
    the signed side channel; without that, its datagrams would all look like replays."""
    r = Reassembler(key=KEY)
    for n in range(10):
        for d in frame(number=n, first_seq=10_000 + 4 * n):
            r.ingest(d, 0.0)
    r.ingest(frame(number=50, first_seq=5)[0], 0.0)
    assert r.counters.malformed_by_reason == {"replay": 1}
    r.announce(1, 51, 5)
    out = [f for d in frame(number=51, first_seq=5) for f in r.ingest(d, 0.0)]
    assert [(f.frame, f.complete) for f in out] == [(51, True)]


# --- signed control requests -----------------------------------------------------------------


def test_request_verifier() -> None:
    v = RequestVerifier(KEY, window=30)
    body, now = b'{"x": 1}', 1_000_000.0
    good = sign_request(KEY, "POST", "/send", body, now)
    assert v.verify(good, "POST", "/send", body, now + 5) == ""
    assert v.verify(good, "POST", "/send", body, now + 6) == "replay"
    assert v.verify(None, "POST", "/send", body, now) == "missing"
    assert v.verify("garbage", "POST", "/send", body, now) == "malformed"
    assert v.verify("12:ééé", "POST", "/send", body, 12) == "malformed"  # not 64 hex digits
    assert v.verify("12:" + "é" * 64, "POST", "/send", body, 12) == "signature"
    old = sign_request(KEY, "POST", "/send", body, now - 31)
    assert v.verify(old, "POST", "/send", body, now) == "stale"
    for method, path, payload in (
        ("PUT", "/send", body),
        ("POST", "/x", body),
        ("POST", "/send", b""),
    ):
        fresh = sign_request(KEY, "POST", "/send", body, now + 1)
        assert v.verify(fresh, method, path, payload, now + 1) == "signature"
    forged = sign_request(b"another-key-0123456789abcdef", "POST", "/send", body, now)
    assert v.verify(forged, "POST", "/send", body, now) == "signature"
    assert v.rejected == {"replay": 1, "missing": 1, "malformed": 2, "signature": 5, "stale": 1}


def test_request_head_is_judged_before_the_body() -> None:
    """An unsigned, stale or replayed request is refused from its header: no body needed."""
    v = RequestVerifier(KEY, window=30)
    body, now = b"x" * 100, 1_000_000.0
    good = sign_request(KEY, "POST", "/send", body, now)
    assert v.verify_head(good, now) == ""
    assert v.verify(good, "POST", "/send", body, now) == ""
    assert v.verify_head(good, now) == "replay"
    assert v.verify_head(None, now) == "missing"
    assert v.verify_head(sign_request(KEY, "POST", "/send", body, now - 60), now) == "stale"
    assert v.rejected == {"replay": 1, "missing": 1, "stale": 1}


@pytest.fixture
def served():
    """A control app with a key on an ephemeral port, in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    registry = CollectorRegistry()

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"body": (await request.read()).decode()})

    async def start() -> web.AppRunner:
        app = control_app(KEY, registry)
        app.add_routes([metrics_route(registry), web.post("/echo", echo)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner

    runner = loop.run_until_complete(start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_middleware_with_the_client_signer(served: str) -> None:
    assert request(f"{served}/echo", b"hi", "POST", key=KEY) == {"body": "hi"}
    with pytest.raises(SemnetError, match="401 authentication failed: missing"):
        request(f"{served}/echo", b"hi", "POST")
    with pytest.raises(SemnetError, match="401 authentication failed: signature"):
        request(f"{served}/echo", b"hi", "POST", key=b"another-key-0123456789abcdef")
    text = request(f"{served}/metrics")  # Prometheus cannot sign: metrics stay open
    rejected = by_label(metric_totals(text), "semnet_http_auth_rejected_total", "reason")
    assert rejected == {**dict.fromkeys(REQUEST_REFUSALS, 0), "missing": 1, "signature": 1}


# --- keys in configs -------------------------------------------------------------------------


def test_key_from_file_or_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY + b"\n")
    assert load(SenderConfig, {"auth_key_file": str(path)}).load_auth_key() == KEY
    monkeypatch.setenv("SEMNET_TEST_KEY", KEY.decode())
    assert load(ReceiverConfig, {"auth_key_env": "SEMNET_TEST_KEY"}).load_auth_key() == KEY
    assert load(ReceiverConfig, {}).load_auth_key() is None


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"auth_key_file": "{tmp}/absent"}, "auth_key_file: cannot read"),
        ({"auth_key_file": "{tmp}"}, "auth_key_file: cannot read"),
        ({"auth_key_file": "{tmp}/short"}, "auth_key_file: key is 5 bytes, need at least 16"),
        ({"auth_key_env": "SEMNET_UNSET_KEY"}, "auth_key_env: $SEMNET_UNSET_KEY is not set"),
        ({"auth_key_file": "{tmp}/short", "auth_key_env": "X"}, "set one, not both"),
    ],
)
def test_key_errors_name_the_key_never_its_value(tmp_path, keys, expected) -> None:
    (tmp_path / "short").write_bytes(b"s3cr3")
    os.environ.pop("SEMNET_UNSET_KEY", None)
    cfg = load(SenderConfig, {k: v.format(tmp=tmp_path) for k, v in keys.items()})
    with pytest.raises(ConfigError, match=expected.replace("$", r"\$")) as info:
        cfg.load_auth_key()
    assert "s3cr3" not in str(info.value)


# --- an authenticated testbed ----------------------------------------------------------------


@pytest.mark.slow
def test_authenticated_testbed_refuses_forgeries_and_replays(tmp_path) -> None:
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[96:288, 128:384])
    one = {"threads": 1}
    with LocalTestbed(tmp_path, sender=one, receiver=one, auth_key=KEY) as bed:
        first = bed.send(photo, "a.png")
        assert first["datagrams_received"] == first["datagrams_sent"] > 1, first
        rx = f"http://{bed.http['receiver']}"
        for url, body, method in (
            (f"http://{bed.http['sender']}/send", b"x", "POST"),
            (f"{rx}/reference", b"x", "POST"),
            (f"{rx}/report/1/{first['frame']}", None, "GET"),
        ):
            with pytest.raises(SemnetError, match="401"):
                request(url, body, method)
            with pytest.raises(SemnetError, match="401"):
                request(url, body, method, key=b"another-key-0123456789abcdef")
        # what an attacker on the path can do without the key
        legit = frame(stream=1, number=first["frame"] + 7, first_seq=1)
        altered = bytearray(legit[0])
        altered[60] ^= 1
        spoofed = frame(stream=1, number=5, key=b"another-key-0123456789abcdef")
        plain = frame(stream=1, number=6, key=None)
        bed.inject("proxy", [reseal(altered), spoofed[0], plain[0]])
        second = bed.send(photo, "b.png")
        assert second["datagrams_received"] == second["datagrams_sent"], second
        # replaying the datagrams of a frame long done: sequence numbers a whole window behind
        # the stream (the sender numbers from its boot clock, so take them from its report)
        old = (second["first_seq"] - 4096) % 2**32
        bed.inject("receiver", frame(stream=1, number=second["frame"], first_seq=old))
        bed.send(photo, "c.png")
        totals = metric_totals(bed.metrics("receiver"))
        malformed = by_label(totals, "semnet_receiver_datagrams_malformed_total", "reason")
        assert malformed["auth"] == 2 and malformed["unauthenticated"] == 1
        assert malformed["replay"] >= 1
        acc = bed.accounting()
        assert acc.closes, acc
        for name, n in (("sender", 1), ("receiver", 2)):
            rejected = metric_totals(bed.metrics(name))
            assert by_label(rejected, "semnet_http_auth_rejected_total", "reason") == {
                **dict.fromkeys(REQUEST_REFUSALS, 0),
                "missing": n,
                "signature": n,
            }
        assert "semnet-test-key" not in bed.log("sender") + bed.log("receiver")
