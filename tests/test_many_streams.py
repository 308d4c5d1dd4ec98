"""Many streams through one bottleneck (issue 20): the proxy's forward impairment is one model
for every stream through it, so ``rate`` is one departure schedule and ``limit`` one queue; what
each stream got of it is counted by stream, so the accounting closes stream by stream."""

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import generate_latest

from semnet.core import feedback
from semnet.daemons.config import ProxyConfig
from semnet.daemons.proxy import Proxy
from semnet.testbed import LocalTestbed, by_label, metric, metric_totals

STREAMS = 8


class Recorder:
    """Stands in for the proxy's socket: keeps what it was asked to send, and where."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def sendto(self, data: bytes, dest: tuple) -> None:
        self.sent.append((data, dest))


def datagram(stream: int, index: int, size: int = 200) -> bytes:
    """Enough of a data datagram for the proxy, which reads only its first six bytes (magic,
    version, flags, scheme, stream); the rest is never parsed on the way through."""
    head = bytes((0x53, 1, 0, 0)) + stream.to_bytes(2, "big") + index.to_bytes(2, "big")
    return head + bytes(size - len(head))


def peer(stream: int) -> tuple[str, int]:
    return ("127.0.0.1", 40000 + stream)


def proxy_for(impair: str) -> Proxy:
    cfg = ProxyConfig(listen="127.0.0.1:9", forward="127.0.0.1:7", http="127.0.0.1:8")
    proxy = Proxy(ProxyConfig(**{**vars(cfg), "impair": impair}))
    proxy.sock = Recorder()
    return proxy


def test_rate_and_limit_are_one_queue_for_every_stream() -> None:
    """8 streams of 4 datagrams arrive together at ``rate 1kbit limit 10``: 200 bytes take 1.6 s
    to leave, so none leaves while they arrive. One queue admits 10 in all, in arrival order
    (streams 1 and 2, half of 3) and drops the other 22 for ``limit``; a queue per stream would
    have taken every stream's 4. The admitted copies leave one packet time apart whatever their
    stream: one departure schedule."""

    async def scenario() -> list[float]:
        proxy = proxy_for("rate 1kbit limit 10")
        for stream in range(1, STREAMS + 1):
            for i in range(4):
                proxy.on_datagram(datagram(stream, i), peer(stream))
        releases = sorted(entry[0] for entry in proxy.heap)
        totals = metric_totals(generate_latest(proxy.registry).decode())
        proxy.timer.cancel()
        return releases, totals, proxy.sock.sent

    releases, totals, sent = asyncio.run(scenario())
    assert sent == []  # everything admitted is still held
    assert len(releases) == 10
    assert np.allclose(np.diff(releases), 200 * 8 / 1000, rtol=0, atol=1e-6)

    def per_stream(name: str, **labels: str) -> dict[str, int]:
        return by_label(totals, f"semnet_proxy_stream_{name}", "stream", **labels)

    streams = [str(s) for s in range(1, STREAMS + 1)]
    assert per_stream("datagrams_in_total") == {**dict.fromkeys(streams, 4), "other": 0}
    held = per_stream("queue_datagrams")
    assert held == {"1": 4, "2": 4, "3": 2, **dict.fromkeys(streams[3:], 0), "other": 0}
    assert per_stream("datagrams_out_total") == held
    limit = per_stream("datagrams_dropped_total", reason="limit")
    assert limit == {"1": 0, "2": 0, "3": 2, **dict.fromkeys(streams[3:], 4), "other": 0}
    assert per_stream("datagrams_dropped_total", reason="loss") == dict.fromkeys(
        [*streams, "other"], 0
    )
    # the streams' counts partition the direction's own
    fwd = {"direction": "forward"}
    assert metric(totals, "semnet_proxy_datagrams_in_total", **fwd) == 32
    assert metric(totals, "semnet_proxy_datagrams_dropped_total", reason="limit", **fwd) == 22
    assert metric(totals, "semnet_proxy_queue_datagrams", **fwd) == 10


def test_non_datagrams_count_as_other_and_streams_past_the_cap_too() -> None:
    from semnet.daemons.proxy import MAX_STREAMS

    async def scenario() -> dict:
        proxy = proxy_for("")
        proxy.on_datagram(b"", peer(1))
        proxy.on_datagram(b"\x53\x01garbage", peer(1))  # a data datagram's prefix: stream "ga"
        proxy.on_datagram(b"\x52\x01\x00\x00\x00\x05", peer(1))  # a report's magic: other
        for stream in range(MAX_STREAMS + 10):
            proxy.on_datagram(datagram(1000 + stream, 0), peer(stream))
        return metric_totals(generate_latest(proxy.registry).decode())

    totals = asyncio.run(scenario())
    counted = by_label(totals, "semnet_proxy_stream_datagrams_in_total", "stream")
    assert len(counted) == MAX_STREAMS + 1  # and other
    assert counted["other"] == 2 + 11  # two non-datagrams, the streams past the cap
    assert counted[str(int.from_bytes(b"rb", "big"))] == 1  # b"\x53\x01ga|rb|age"
    assert sum(counted.values()) == MAX_STREAMS + 13


def test_reports_go_back_to_the_sender_of_their_stream() -> None:
    """With several senders behind the proxy, a receiver report reaches the one that sends its
    stream, not whichever sent last."""

    async def scenario() -> list[tuple[bytes, tuple]]:
        proxy = proxy_for("")
        for stream in (1, 2, 3):
            proxy.on_datagram(datagram(stream, 0), peer(stream))
        proxy.sock.sent.clear()
        for stream in (2, 1, 3, 99):
            report = feedback.ReceiverReport(stream, 1, 0, 0.0, 0, 0.0, 0.0, 1)
            proxy.on_datagram(feedback.encode(report), proxy.forward_addr)
        proxy.on_datagram(b"not a report", proxy.forward_addr)
        return proxy.sock.sent

    sent = asyncio.run(scenario())
    # stream 99 has no sender here and the garbage is no report: both go to the last peer
    assert [dest for _, dest in sent] == [peer(2), peer(1), peer(3), peer(3), peer(3)]


# -- real daemons --------------------------------------------------------------------------

RATE = 2000  # bytes/s: 16kbit, 0.1 s for a 200-byte datagram
LIMIT = 12  # datagrams: more than a frame's 7, fewer than 8 frames'


@pytest.mark.slow
def test_eight_streams_share_one_bottleneck_and_every_stream_accounts(tmp_path) -> None:
    """8 senders (one stream each, their own processes) send 2 frames each, the streams' frames
    started together, through one proxy at ``rate 16kbit limit 12``. A 64x96 frame is 7
    datagrams of at most 200 bytes: fewer than the limit, so only a shared queue drops for
    ``limit``. Every frame is reported without error, each stream's accounting closes, the
    streams' counts partition the proxy's and the receiver's, and the bytes delivered are no
    more than the rate allows over the run (an upper bound: a slow machine only lowers it)."""
    from skimage import data

    photo = data.astronaut()
    images = [np.ascontiguousarray(photo[40 * s : 40 * s + 64, 96:192]) for s in range(STREAMS)]
    sender = {
        "threads": 1,
        "backend": "eager",
        "codec": "cnn-c64",
        "datagram_size": 200,
        "rate_mbps": 0.1,  # a frame takes 0.1 s to send: the streams' datagrams interleave
        "report_timeout": 60.0,
    }
    receiver = {
        "threads": 1,
        "backend": "eager",
        "perceptual": False,
        "save_images": False,
        "deadline": 2.5,  # the queue drains in 1.2 s: a frame not whole by then lost datagrams
    }
    frames = 2
    with LocalTestbed(
        tmp_path,
        impair=f"rate 16kbit limit {LIMIT}",
        seed=7,
        sender=sender,
        receiver=receiver,
        senders=STREAMS,
    ) as bed:
        assert [bed.streams[name] for name in bed.senders] == list(range(1, STREAMS + 1))
        before = bed.stream_accounting()
        reports: dict[str, list] = {name: [] for name in bed.senders}
        barrier = threading.Barrier(STREAMS)

        def stream(i: int, name: str) -> None:
            for f in range(frames):
                barrier.wait(timeout=120)  # each round's frames start together
                reports[name].append(bed.send(images[i], f"s{i}f{f}.png", via=name))

        start = time.monotonic()
        threads = [
            threading.Thread(target=stream, args=(i, name)) for i, name in enumerate(bed.senders)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads)
        # every report is back: every datagram the proxy admitted has left it, no frame is in
        # flight; wait for the scrape to show the last held copy gone (not a timing assertion)
        deadline = time.monotonic() + 30
        while metric(metric_totals(bed.metrics("proxy")), "semnet_proxy_queue_datagrams"):
            assert time.monotonic() < deadline, "the proxy still holds datagrams"
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        accounts = bed.stream_accounting(since=before)
        whole = bed.accounting()
        px = metric_totals(bed.metrics("proxy"))
        rx = metric_totals(bed.metrics("receiver"))

    for name, got in reports.items():
        assert len(got) == frames, name
        for r in got:
            assert "error" not in r, r
            assert r["stream"] == bed.streams[name] and r["datagrams_sent"] == 7
            assert 0 <= r["datagrams_received"] <= r["datagrams_sent"]
            assert r["psnr_db"] is not None  # decoded (from fill where datagrams were lost)
    assert whole.closes, whole
    for a in accounts.values():
        assert a.closes, a
        assert a.sent == frames * 7 and a.proxy_held == 0
    # the streams partition the whole: nothing but the senders' datagrams went through
    assert sum(a.sent for a in accounts.values()) == whole.sent
    assert sum(a.received for a in accounts.values()) == whole.received
    for reason in whole.proxy_dropped:
        assert (
            sum(a.proxy_dropped.get(reason, 0) for a in accounts.values())
            == (whole.proxy_dropped[reason])
        )
    # the shared queue filled: no stream alone ever had more than 7 < LIMIT datagrams queued
    limit_drops = sum(a.proxy_dropped.get("limit", 0) for a in accounts.values())
    assert limit_drops > 0
    assert sum(a.proxy_dropped.get("loss", 0) for a in accounts.values()) == 0
    assert {str(s) for s in accounts} <= set(
        by_label(px, "semnet_proxy_stream_datagrams_in_total", "stream")
    )
    # the rate is one: the bytes delivered fit in the run at RATE (+ one datagram: the proxy
    # releases a datagram one packet time after it arrives, never sooner)
    delivered = metric(rx, "semnet_receiver_bytes_received_total")
    assert 0 < delivered <= RATE * elapsed + 200
