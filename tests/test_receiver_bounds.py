"""The receiver's disk and log budgets: saved images rotate within max_saved_bytes, warnings
per reason are rate-limited and say how many were held back."""

import logging
from pathlib import Path

import numpy as np

from semnet.daemons.saved import SavedImages
from semnet.daemons.throttle import LogThrottle


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_saved_images_keep_the_newest_within_the_budget(tmp_path):
    keep = tmp_path / "user-file.png"
    keep.write_bytes(b"not ours")
    one = SavedImages(tmp_path, 10**9).save(noise(0), "probe.png").stat().st_size
    saved = SavedImages(tmp_path, 3 * one)
    paths = [saved.save(noise(i), f"{i}.png") for i in range(8)]
    assert [p.exists() for p in paths] == [False] * 5 + [True] * 3
    assert saved.bytes == sum(p.stat().st_size for p in paths[5:]) <= 3 * one
    assert saved.deleted == 5 and keep.exists()  # files it did not write are never touched


def test_saving_a_name_again_replaces_its_file_once(tmp_path):
    saved = SavedImages(tmp_path, 10**9)
    first = saved.save(noise(0), "same.png")
    again = saved.save(noise(1), "same.png")
    assert first == again and saved.bytes == again.stat().st_size and len(saved.files) == 1


def test_log_throttle_holds_back_a_flood_and_says_so(caplog):
    now = [0.0]
    throttle = LogThrottle(logging.getLogger("t"), burst=2, period=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        logged = [throttle.warning("auth", "refused %d", i) for i in range(10)]
        assert throttle.warning("other", "a different reason") is True
        now[0] = 61.0
        assert throttle.warning("auth", "refused %d", 10) is True
    assert logged == [True, True] + [False] * 8
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused 0",
        "refused 1",
        "a different reason",
        "refused 10 (8 more like this not logged)",
    ]


def test_every_known_reason_is_exported_from_zero():
    """A dashboard's rate() needs a series before the first bad datagram: every reason the
    receiver can count is on /metrics at 0 from the start, with the process and build series."""
    from prometheus_client import generate_latest

    from semnet.core.auth import REQUEST_REFUSALS
    from semnet.core.reassembly import EVICTION_CAPS, MALFORMED_REASONS
    from semnet.daemons.config import ReceiverConfig
    from semnet.daemons.receiver import DROP_REASONS, Receiver
    from semnet.daemons.service import control_app
    from semnet.testbed import by_label, metric_totals

    rx = Receiver(ReceiverConfig(save_images=False, perceptual=False))
    control_app(b"k" * 32, rx.registry)  # with a key, the refusals are exported too
    text = generate_latest(rx.registry).decode()
    totals = metric_totals(text)
    for name, reasons in (
        ("semnet_receiver_datagrams_malformed_total", MALFORMED_REASONS),
        ("semnet_receiver_frames_evicted_total", EVICTION_CAPS),
        ("semnet_receiver_frames_dropped_total", DROP_REASONS),
        ("semnet_http_auth_rejected_total", REQUEST_REFUSALS),
    ):
        assert by_label(totals, name, "reason") == dict.fromkeys(reasons, 0), name
    assert 'semnet_build_info{daemon="receiver"' in text
    assert "process_resident_memory_bytes" in text


def test_the_malformed_reasons_list_every_reason_the_code_counts():
    """Each literal reason passed to WireError or count_malformed in semnet/ is in the list."""
    import ast
    from pathlib import Path

    import semnet
    from semnet.core.reassembly import MALFORMED_REASONS

    found = set()
    for path in Path(semnet.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            arg = node.args[0]
            if name in ("WireError", "count_malformed") and isinstance(arg, ast.Constant):
                found.add(arg.value)
    assert found and found <= set(MALFORMED_REASONS), found - set(MALFORMED_REASONS)


def test_reconstructions_go_to_the_state_folder_unless_told(monkeypatch, tmp_path):
    """Not into whatever folder the receiver was started from."""
    from semnet.daemons.config import output_folder

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert output_folder(None) == tmp_path / "semnet" / "received"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert output_folder(None) == tmp_path / "home" / ".local" / "state" / "semnet" / "received"
    assert output_folder("here") == Path("here")
