"""Restarts: SIGKILL each daemon while a frame is on the wire, start it again. The others keep
running and reconnect; only frames in flight are lost, and the metrics say how many and why."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from semnet.errors import SemnetError
from semnet.testbed import LocalTestbed, metric, metric_totals

pytestmark = pytest.mark.slow

DEADLINE = 0.5
SETTLE = DEADLINE + 1.0 + 0.5  # deadline + the receiver's grace for wholly lost frames


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[96:288, 128:384])


def counter(bed: LocalTestbed, daemon: str, name: str) -> float:
    return metric(metric_totals(bed.metrics(daemon)), name)


class Stream:
    """Frames sent back to back from a thread, each outcome kept: a report, or the client's
    error when the sender itself is gone."""

    def __init__(self, bed: LocalTestbed, photo: np.ndarray) -> None:
        self.bed, self.photo = bed, photo
        self.outcomes: list[dict | str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.outcomes.append(self.bed.send(self.photo, f"f{len(self.outcomes)}.png"))
            except SemnetError as exc:
                self.outcomes.append(str(exc))
                time.sleep(0.1)

    def good_since(self, start: int) -> int:
        return sum(
            isinstance(o, dict)
            and "error" not in o
            and o["datagrams_received"] == o["datagrams_sent"]
            for o in self.outcomes[start:]
        )


def kill_mid_frame(bed: LocalTestbed, name: str, photo: np.ndarray) -> tuple[list, int]:
    """Start a stream, SIGKILL ``name`` right after the receiver got the first datagram of a
    frame (the rest are on their way), restart it, and stop once two whole frames came through
    after the restart. Returns the outcomes and the index of the first one after the restart."""
    received = counter(bed, "receiver", "semnet_datagrams_received_total")
    stream = Stream(bed, photo)
    stream.thread.start()
    try:
        deadline = time.monotonic() + 60
        while counter(bed, "receiver", "semnet_datagrams_received_total") == received:
            assert time.monotonic() < deadline, "no datagram arrived"
            time.sleep(0.005)
        bed.kill(name)
        time.sleep(0.3)
        bed.restart(name)
        restarted = len(stream.outcomes)
        while stream.good_since(restarted + 1) < 2:
            assert time.monotonic() < deadline + 60, stream.outcomes
            time.sleep(0.05)
    finally:
        stream.stop.set()
        stream.thread.join()
    return stream.outcomes, restarted


def closes_from_here(bed: LocalTestbed, photo: np.ndarray) -> None:
    """Once every daemon runs again, the datagram accounting closes exactly over new frames."""
    time.sleep(SETTLE)
    before = bed.accounting()
    for i in range(2):
        report = bed.send(photo, f"after-{i}.png")
        assert report["datagrams_received"] == report["datagrams_sent"], report
    delta = bed.accounting(since=before)
    assert delta.closes and delta.sent > 0, delta


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    one = {"threads": 1}
    with LocalTestbed(
        tmp_path_factory.mktemp("restart"),
        seed=5,
        sender={**one, "rate_mbps": 0.25},  # a frame takes ~270 ms on the wire
        receiver={**one, "deadline": DEADLINE, "save_images": False},
    ) as testbed:
        yield testbed


def test_accounting_closes_before_any_restart(bed, photo):
    bed.send(photo, "first.png")
    time.sleep(SETTLE)
    assert bed.accounting().closes


def test_proxy_killed_mid_frame(bed, photo):
    errors = counter(bed, "sender", "semnet_sender_report_errors_total")
    lost = counter(bed, "receiver", "semnet_receiver_frames_lost_total")
    incomplete = counter(bed, "receiver", "semnet_receiver_frames_incomplete_total")
    outcomes, _ = kill_mid_frame(bed, "proxy", photo)
    reports = [o for o in outcomes if isinstance(o, dict)]
    assert len(reports) == len(outcomes)  # the sender never went away
    assert all("error" not in r for r in reports)  # the receiver reported every frame
    cut = [r for r in reports if 0 < r["datagrams_received"] < r["datagrams_sent"]]
    gone = [r for r in reports if r["datagrams_received"] == 0]
    assert cut, reports  # the frame in flight lost its tail
    time.sleep(SETTLE)
    assert counter(bed, "sender", "semnet_sender_report_errors_total") == errors
    assert counter(bed, "receiver", "semnet_receiver_frames_lost_total") - lost == len(gone)
    assert counter(bed, "receiver", "semnet_receiver_frames_incomplete_total") - incomplete == len(
        cut
    )
    closes_from_here(bed, photo)


def test_receiver_killed_mid_frame(bed, photo):
    errors = counter(bed, "sender", "semnet_sender_report_errors_total")
    outcomes, restarted = kill_mid_frame(bed, "receiver", photo)
    reports = [o for o in outcomes if isinstance(o, dict)]
    assert len(reports) == len(outcomes)
    failed = [r for r in reports if "error" in r]
    assert failed and "error" in reports[0], reports[0]  # the frame in flight: no report
    assert all("error" not in r for r in reports[restarted + 1 :])
    reported = counter(bed, "sender", "semnet_sender_report_errors_total") - errors
    assert reported == len(failed)
    closes_from_here(bed, photo)


def test_sender_killed_mid_frame_and_restarted_ids_do_not_collide(bed, photo):
    late = counter(bed, "receiver", "semnet_receiver_datagrams_late_total")
    incomplete = counter(bed, "receiver", "semnet_receiver_frames_incomplete_total")
    before = bed.send(photo, "before.png")["frame"]
    outcomes, restarted = kill_mid_frame(bed, "sender", photo)
    assert isinstance(outcomes[0], str)  # the client lost the frame in flight with the sender
    after = [o for o in outcomes[restarted:] if isinstance(o, dict)]
    assert after and all("error" not in r for r in after), after
    assert all(r["frame"] > before for r in after)  # a new run's ids start ahead of the last's
    time.sleep(SETTLE)
    # the frame in flight arrived in part and was decoded incomplete at its deadline; nothing of
    # the new run was taken for late datagrams of the old one
    assert counter(bed, "receiver", "semnet_receiver_frames_incomplete_total") - incomplete == 1
    assert counter(bed, "receiver", "semnet_receiver_datagrams_late_total") == late
    closes_from_here(bed, photo)
