"""Integration: sender, proxy and receiver as real subprocesses talking UDP on loopback."""

import socket

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semnet.core.impair import Impairment
from semnet.core.impair import parse_spec as parse_impairment
from semnet.core.partition import parse_spec
from semnet.images import load_image
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings, perceptual_available
from semnet.pipeline.offline import transmit
from semnet.testbed import LocalTestbed

pytestmark = pytest.mark.slow


def samples(text: str, name: str) -> dict[tuple, float]:
    """Prometheus exposition -> {labels tuple: value} for one sample name."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(text: str, name: str, **match) -> float:
    return sum(
        v
        for labels, v in samples(text, name).items()
        if all((k, str(m)) in labels for k, m in match.items())
    )


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[96:288, 128:384])  # 192 x 256


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    one_thread = {"threads": 1}  # as tests/conftest.py sets for the offline decode
    with LocalTestbed(
        tmp_path_factory.mktemp("bed"), impair="", seed=3, sender=one_thread, receiver=one_thread
    ) as testbed:
        yield testbed


def test_frame_decodes_and_matches_offline_bit_for_bit(bed, photo):
    """The daemons and the offline chain make one FrameReport: same fields, same values."""
    report = bed.send(photo, "astronaut.png")
    assert report["datagrams_received"] == report["datagrams_sent"] > 1
    assert report["loss_ratio"] == 0.0
    assert report["psnr_db"] > 15 and 0 < report["ssim"] <= 1

    codec = backends.load(zoo.DEFAULT_CODEC, threads=1)  # the daemons' backend and threads
    entry = zoo.entry(zoo.DEFAULT_CODEC)
    encoder = FrameEncoder(codec, entry.codec_id, PathSettings(parse_spec("channel")), seed=3)
    encoder.next_frame = report["frame"]
    decoder = FrameDecoder(lambda _: codec, get_fill("zero"))
    offline = transmit(photo, encoder, decoder, Impairment(parse_impairment(""), 3))
    assert np.array_equal(offline.image, load_image(report["saved"]))
    assert set(offline.to_json()) == set(report) - {"error"}
    same = ("stream", "frame", "datagrams_sent", "datagrams_received", "datagrams_malformed")
    same += ("bytes_sent", "bpp", "loss_ratio", "psnr_db", "ssim", "ms_ssim")
    assert {k: report[k] for k in same} == {k: getattr(offline, k) for k in same}


def test_counters_reconcile_under_loss(bed, photo):
    bed.set_impairment("loss random 30%")
    try:
        reports = [bed.send(photo, f"p{i}.png") for i in range(4)]
    finally:
        bed.set_impairment("")
    assert all(0 < r["datagrams_received"] < r["datagrams_sent"] for r in reports) or sum(
        r["datagrams_received"] for r in reports
    ) < sum(r["datagrams_sent"] for r in reports)
    sent = total(bed.metrics("sender"), "semnet_datagrams_sent_total")
    proxy = bed.metrics("proxy")
    received = total(bed.metrics("receiver"), "semnet_datagrams_received_total")
    dropped = total(proxy, "semnet_proxy_datagrams_dropped_total", direction="forward")
    assert dropped > 0
    assert sent == received + dropped
    assert total(proxy, "semnet_proxy_datagrams_in_total", direction="forward") == sent


def test_malformed_datagram_is_counted_not_fatal(bed, photo):
    host, port = bed.udp["receiver"].split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x53\x01garbage that is not a datagram", (host, int(port)))
        s.sendto(b"", (host, int(port)))
    report = bed.send(photo, "after-garbage.png")
    assert report["datagrams_received"] == report["datagrams_sent"]
    text = bed.metrics("receiver")
    assert total(text, "semnet_receiver_datagrams_malformed_total") >= 2
    assert total(text, "semnet_receiver_datagrams_malformed_total", reason="truncated") >= 1


def test_metrics_expose_quality_histograms(bed, photo):
    report = bed.send(photo, "m.png")
    text = bed.metrics("receiver")
    if perceptual_available():  # LPIPS and semantic accuracy come with the optional weights
        assert 0 <= report["lpips"] < 1 and isinstance(report["semantic_agree"], bool)
        assert total(text, "semnet_frame_lpips_count", loss_bucket="0") >= 1
        assert total(text, "semnet_frame_semantic_total", fill="zero") >= 1
    psnr = samples(text, "semnet_frame_psnr_db_bucket")
    assert any(("loss_bucket", "0") in labels and ("fill", "zero") in labels for labels in psnr)
    assert total(text, "semnet_frame_ssim_count") >= 1
    assert total(text, "semnet_frame_loss_ratio_count") >= 1
    assert total(text, "semnet_frames_decoded_total") >= 1


def test_ctrl_c_stops_every_daemon_cleanly(tmp_path):
    bed = LocalTestbed(tmp_path)
    with bed:
        pass_codes = {name: None for name in ("sender", "proxy", "receiver")}
        for name in pass_codes:
            pass_codes[name] = bed.stop(name)
    assert pass_codes == {"sender": 0, "proxy": 0, "receiver": 0}


def test_frames_in_flight_overlap_and_each_report_comes_back(bed, photo, tmp_path):
    """`semnet send --window 3`: the sender encodes, paces and awaits reports of several frames
    at once; every frame still gets its own report, printed in the order the files were given,
    and the frames reached the wire in the order the sender numbered them."""
    import json
    import subprocess
    import sys

    from semnet.images import save_png

    names = [f"w{i}.png" for i in range(5)]
    for i, name in enumerate(names):
        save_png(np.ascontiguousarray(photo[:, i * 8 :][:, :192]), tmp_path / name)
    before = total(bed.metrics("receiver"), "semnet_receiver_datagrams_reordered_total")
    result = subprocess.run(
        [sys.executable, "-m", "semnet", "send", *(str(tmp_path / n) for n in names)]
        + ["--sender", bed.http["sender"], "--window", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert [r["name"] for r in reports] == names
    assert all("error" not in r and r["psnr_db"] is not None for r in reports), reports
    assert len({r["frame"] for r in reports}) == len(names)
    after = total(bed.metrics("receiver"), "semnet_receiver_datagrams_reordered_total")
    assert after == before  # no frame overtook another on the wire
