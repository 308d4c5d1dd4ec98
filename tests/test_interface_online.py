"""Paper 003 through the daemons (issue 18): the sender sends a bit-interface codec's latent as
bit-planes, one importance class per datagram; the proxy, told the source's interface over its
control API, is the wireless access node that flips payload bits by class; the receiver takes
the corrupted payloads (its crc leaves them out) and decodes — the very image and the very
flips the offline chain gives for the same seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from semnet.client import request
from semnet.core import interface as itf
from semnet.core.impair import Impairment, parse_spec
from semnet.errors import SemnetError
from semnet.images import load_image
from semnet.models import backends, zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, PathSettings
from semnet.pipeline.offline import transmit
from semnet.testbed import LocalTestbed, by_label, metric_totals

CODEC = "bsc-prescribed"
LINK = "link awgn snr 4dB errors bits"
SEED = 5
SENDER = {"codec": CODEC, "threads": 1, "planes": True, "payload_check": False}
SENDER |= {"first_frame": 70, "seed": SEED}


def interface() -> itf.Interface:
    return itf.from_manifest(asdict(zoo.where(CODEC).entry))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.chelsea()[60:252, 100:356])  # 192 x 256


def offline(photo: np.ndarray, frame: int) -> tuple[np.ndarray, dict[int, int]]:
    """The image and the flips by class that the offline chain gives for the same seeds."""
    codec = backends.load(CODEC, threads=1)  # as the daemons below run it
    path = PathSettings(planes=True, payload_check=False)
    encoder = FrameEncoder(codec, zoo.entry(CODEC).codec_id, path, seed=SEED)
    encoder.next_frame = frame
    model = Impairment(parse_spec(LINK), SEED, interface())
    report = transmit(photo, encoder, FrameDecoder(lambda _: codec, get_fill("zero")), model)
    return report.image, model.counters.class_flips


def test_bit_errors_by_class_through_the_daemons_equal_offline(tmp_path, photo):
    iface_file = tmp_path / "interface.json"
    iface_file.write_text(interface().to_json())
    proxy = {"interface": str(iface_file)}
    receiver = {"threads": 1}
    bed = LocalTestbed(tmp_path, LINK, SEED, SENDER, receiver, proxy=proxy)
    with bed:
        report = bed.send(photo, "chelsea.png")
        totals = metric_totals(bed.metrics("proxy"))
        shown = request(f"http://{bed.http['proxy']}/interface", timeout=5.0)
    assert report["datagrams_received"] == report["datagrams_sent"]  # bits flip, none lost
    flips = by_label(totals, "semnet_proxy_link_bit_flips_total", "class", direction="forward")
    bits = by_label(totals, "semnet_proxy_link_bits_total", "class", direction="forward")
    assert sorted(flips) == ["0", "1", "2", "3"] and all(bits[c] > 0 for c in bits)
    rates = [flips[c] / bits[c] for c in "0123"]
    assert rates[0] < rates[3]  # the MSBs are protected the most
    image, offline_flips = offline(photo, report["frame"])
    assert {str(k): v for k, v in offline_flips.items()} == flips
    assert np.array_equal(load_image(report["saved"]), image)
    assert len(shown["forward"]["class_flip"]) == 4
    assert shown["interface"]["channels"] == interface().channels


def semnet(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "semnet", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_bit_error_proxy_without_an_interface_says_so_at_start():
    result = semnet("proxy", "--impair", LINK, "--http", "127.0.0.1:0", "--listen", "127.0.0.1:0")
    assert result.returncode == 2
    assert "impair: link errors bits: no interface" in result.stderr
    assert "Traceback" not in result.stderr


def test_interface_changes_at_run_time_and_bad_ones_change_nothing(tmp_path):
    with LocalTestbed(tmp_path, impair="loss 1%") as bed:
        proxy = bed.http["proxy"]

        def ctl(*args: str) -> subprocess.CompletedProcess:
            return semnet("ctl", "proxy", *args, "--proxy", proxy)

        short = tmp_path / "short.json"
        short.write_text(json.dumps({"channels": 2, "bits": 2, "eps": [0.1, 0.2, 0.3]}))
        wide = tmp_path / "wide.json"
        wide.write_text(json.dumps({"channels": 1, "bits": 2, "eps": [0.1, 0.7]}))
        for bad, reason in ((short, "eps has 3 values, expected 4"), (wide, "outside [0, 0.5]")):
            result = ctl("interface", "set", str(bad))
            assert result.returncode == 2 and reason in result.stderr, result.stderr
        with pytest.raises(SemnetError, match="outside"):  # the proxy checks too
            body = json.dumps({"channels": 1, "bits": 2, "eps": [0.1, 0.7]}).encode()
            request(f"http://{proxy}/interface", body, "PUT", timeout=5.0)
        refused = ctl("set", LINK)
        assert refused.returncode == 2 and "no interface" in refused.stderr
        good = tmp_path / "good.json"
        good.write_text(interface().to_json())
        assert ctl("interface", "set", str(good)).returncode == 0
        assert ctl("set", LINK).returncode == 0
        shown = ctl("interface", "show")
        assert "16 channels x 4 bits" in shown.stdout and "flip probability" in shown.stdout
