"""The command line: user mistakes and dead peers give one line and a non-zero exit, never a
traceback."""

import json
import subprocess
import sys

import pytest

from semnet.models import DEFAULT_CODEC


def semnet(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "semnet", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("bogus_key: 1\n", "bogus_key: unknown key"),
        ("deadline: -1\n", "deadline: -1.0 must be in (0, 3600]"),
        ("max_frames: many\n", "max_frames: must be int"),
        ("listen: nowhere\n", "listen: 'nowhere' is not host:port"),
        ("fill: [zero\n", "invalid YAML"),
        ("- a list\n", "top level must be a mapping"),
    ],
)
def test_bad_receiver_config_names_the_key(tmp_path, config, expected):
    path = tmp_path / "receiver.yaml"
    path.write_text(config)
    result = semnet("receiver", "--config", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    result = semnet("proxy", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_send_to_dead_sender_is_reported(tmp_path):
    from semnet.testbed import free_ports

    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(image)
    (port,) = free_ports(1)
    result = semnet("send", str(image), "--sender", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_send_unreadable_image(tmp_path):
    result = semnet("send", str(tmp_path / "nothing.png"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_demo_rejects_bad_loss_list():
    result = semnet("demo", "--loss", "0,abc")
    assert result.returncode == 2
    assert "--loss" in result.stderr


def test_zoo_list_json_has_names():
    result = semnet("zoo", "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert any(e["name"] == "cnn-c64" for e in entries)


@pytest.mark.slow
def test_demo_json_on_a_folder(tmp_path):
    from skimage import data

    from semnet.images import save_png

    save_png(data.coffee()[:128, :192], tmp_path / "coffee.png")
    save_png(data.chelsea()[:128, :160], tmp_path / "cat.png")
    args = ("demo", "--images", str(tmp_path), "--loss", "0,0.3", "--repeats", "2", "--json")
    result = semnet(*args, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    again = semnet(*args, timeout=300)  # the same seed: the same frames, losses and scores
    assert json.loads(again.stdout)["results"] == out["results"]
    assert out["codec"] == DEFAULT_CODEC and 0 < out["bpp"] < 1.5 and out["repeats"] == 2
    assert [r["loss"] for r in out["results"]] == [0.0, 0.3]
    assert len(out["rows"]) == 2 * 2 * 2  # losses x repeats x images
    lossless, lossy = out["results"]
    for r in out["results"]:
        assert {"datagrams_sent", "datagrams_received", "psnr_db", "ssim"} <= set(r)
        assert r["datagrams_sent"] > 0
        assert r["realised_loss"] == 1 - r["datagrams_received"] / r["datagrams_sent"]
    assert lossless["datagrams_received"] == lossless["datagrams_sent"]
    assert lossy["datagrams_received"] <= lossy["datagrams_sent"]


@pytest.mark.parametrize(
    ("daemon", "config", "expected"),
    [
        ("sender", "codec: [cnn\n", "invalid YAML"),
        ("sender", "rate_mbps: fast\n", "rate_mbps: must be float"),
        ("sender", "first_frame: 4294967296\n", "first_frame: 4294967296 must be a u32"),
        ("sender", "auth_key: s3cr3t-value\n", "auth_key: unknown key"),
        ("sender", "auth_key_env: SEMNET_NO_SUCH_VAR\n", "auth_key_env: $SEMNET_NO_SUCH_VAR"),
        ("receiver", "auth_key_file: {tmp}\n", "auth_key_file: cannot read"),
        ("receiver", "auth_key_file: {tmp}/short.key\n", "key is 9 bytes, need at least 16"),
        ("receiver", "max_stream_frames: 0\n", "max_stream_frames: 0 must be > 0"),
    ],
)
def test_bad_daemon_config_exits_with_the_key_never_the_secret(tmp_path, daemon, config, expected):
    (tmp_path / "short.key").write_text("s3cr3t-ky")
    path = tmp_path / f"{daemon}.yaml"
    path.write_text(config.format(tmp=tmp_path))
    result = semnet(daemon, "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "s3cr3t" not in result.stderr


@pytest.mark.slow
def test_send_and_ctl_against_an_authenticated_testbed(tmp_path):
    from skimage import data

    from semnet.images import save_png
    from semnet.testbed import LocalTestbed

    image = save_png(data.coffee()[:128, :192], tmp_path / "coffee.png")
    key_file = tmp_path / "key"
    key_file.write_bytes(b"k" * 32)
    one_thread = {"threads": 1}
    with LocalTestbed(
        tmp_path / "bed", auth_key=b"k" * 32, sender=one_thread, receiver=one_thread
    ) as bed:
        sender, proxy = bed.http["sender"], bed.http["proxy"]
        unsigned = semnet("send", str(image), "--sender", sender)
        assert unsigned.returncode == 2 and "401" in unsigned.stderr
        signed = semnet(
            "send", str(image), "--sender", sender, "--json", "--auth-key-file", str(key_file)
        )
        assert signed.returncode == 0, signed.stderr
        (report,) = json.loads(signed.stdout)
        assert report["datagrams_received"] == report["datagrams_sent"]
        assert semnet("ctl", "proxy", "show", "--proxy", proxy).returncode == 2
        shown = semnet(
            "ctl",
            "proxy",
            "set",
            "loss random 5%",
            "--proxy",
            proxy,
            "--auth-key-file",
            str(key_file),
            "--json",
        )
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["forward"]["spec"] == "loss random 5%"


def test_send_exits_non_zero_when_a_frame_failed(tmp_path, monkeypatch):
    """The receiver's report says the frame failed: the exit status says so too."""
    from click.testing import CliRunner
    from PIL import Image

    import semnet.client
    from semnet.cli.main import cli
    from semnet.cli.send import send

    cli.add_command(send)
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    failed = {"name": "x.png", "frame": 1, "datagrams_sent": 3, "error": "receiver is down"}
    monkeypatch.setattr(semnet.client, "send_image", lambda *a, **k: failed)
    result = CliRunner().invoke(cli, ["send", str(image)])
    assert result.exit_code != 0
    assert "1 of 1 frames failed" in result.output and "receiver is down" in result.output


class FakeTestbed:
    """The demo's daemons, faked: a frame of big.png is 10 datagrams, of small.png 2, and under
    any loss each frame loses one."""

    def __init__(self, workdir, seed, sender, receiver) -> None:
        self.lossy = False

    def __enter__(self) -> "FakeTestbed":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def set_impairment(self, spec: str) -> None:
        self.lossy = spec != "loss random 0%"

    def send(self, image, name: str) -> dict:
        sent = 10 if name == "big.png" else 2
        received = sent - self.lossy
        ratio = 1 - received / sent
        return {
            "name": name,
            "datagrams_sent": sent,
            "datagrams_received": received,
            "loss_ratio": ratio,
            "psnr_db": 30 - 20 * ratio,
            "ssim": 0.9 - ratio,
            "bpp": 1.0,
        }


def test_demo_realised_loss_is_lost_over_sent_and_plot_reads_its_json(tmp_path, monkeypatch):
    """10 + 2 datagrams, 1 + 1 lost: 2/12 = 16.7% realised, not the frames' mean (5% + 50%) / 2."""
    from click.testing import CliRunner
    from PIL import Image

    import semnet.testbed
    from semnet.cli.demo import demo
    from semnet.cli.main import cli
    from semnet.cli.plot import plot

    cli.add_command(demo)
    cli.add_command(plot)
    monkeypatch.setattr(semnet.testbed, "LocalTestbed", FakeTestbed)
    for name in ("big.png", "small.png"):
        Image.new("RGB", (48, 32)).save(tmp_path / name)
    args = ["demo", "--images", str(tmp_path), "--loss", "0,0.3", "--repeats", "2"]
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "   30%      24        20     16.7% " in table.stdout
    result = CliRunner().invoke(cli, [*args, "--json"])
    out = tmp_path / "demo.json"
    out.write_text(result.stdout)
    assert json.loads(result.stdout)["results"][1]["realised_loss"] == pytest.approx(2 / 12)
    plotted = CliRunner().invoke(cli, ["plot", str(out), "--out", str(tmp_path / "plots")])
    assert plotted.exit_code == 0, plotted.output
    for name in ("psnr_vs_loss", "ssim_vs_loss"):
        with Image.open(tmp_path / "plots" / f"{name}.png") as im:
            im.verify()
