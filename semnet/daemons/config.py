"""Daemon configs (configs/*.yaml). A CLI flag overrides the file; every key is validated.

Control ports (``http``) bind to 127.0.0.1 by default: exposing one is a deliberate choice, and
with a key set every control request must be signed (see semnet.core.auth).
"""

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semnet.config import brief, check, load, read_yaml, validate
from semnet.core.auth import check_key
from semnet.core.impair import parse_spec, spec_from_mapping
from semnet.core.wire import QuantKind
from semnet.daemons.net import parse_address
from semnet.errors import ConfigError
from semnet.models import BACKENDS, DEFAULT_CODEC, zoopath


def parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    """A field check from a parser: the value is valid when ``parse`` takes it."""

    def ok(value: str) -> bool:
        try:
            parse(value)
        except ConfigError:
            return False
        return True

    return ok


MAX_PIXELS = 2**21  # a Full HD frame (1920x1080) fits; decoding one costs about 1 GiB on CPU
address = check(parses(parse_address), "is not host:port")
positive = check(lambda v: v > 0, "must be > 0")
# torch aborts the process on absurd thread counts; no host we run on has more cores than this
thread_count = check(lambda v: 0 <= v <= 1024, "must be in 0..1024 (0: torch's default)")
device_name = check(
    lambda v: re.fullmatch(r"auto|cpu|cuda(:\d{1,2})?|mps", v) is not None,
    "is not auto, cpu, cuda, cuda:N or mps",
)
quant_kind = check(
    lambda v: v is None or v.upper() in QuantKind.__members__,
    f"is not a quantizer ({', '.join(k.lower() for k in QuantKind.__members__)})",
)
bit_width = check(lambda v: v is None or 1 <= v <= 16, "must be in 1..16 (unset: the codec's)")
MAX_DEADLINE = 3600.0  # seconds; an incomplete frame must expire, or it holds its caps forever
deadline_range = check(lambda v: 0 < v <= MAX_DEADLINE, f"must be in (0, {MAX_DEADLINE:g}] seconds")
# Report numbers start from the wall clock in ms (receiver.py): 10 reports a second for each of
# the reassembler's 64 streams stay below 1000 a second, so a restart starts ahead of them.
report_period = check(lambda v: v == 0 or 0.1 <= v <= 3600, "must be 0 (off) or in 0.1..3600 s")


def _impairment(value: str | dict) -> None:
    """A netem string or mapping, parsed now so a bad spec stops the proxy at start."""
    if isinstance(value, dict):
        spec_from_mapping(value)
    else:
        parse_spec(value)


impairment = validate(_impairment)
backend_name = check(
    lambda v: v in BACKENDS, f"is not a backend ({', '.join(BACKENDS)}; docs/performance.md)"
)
# Zoo folders or manifest files searched before the built-in zoo (docs/plugins.md): one path or
# a list. A sender and its receiver need the same ones (the receiver finds codecs by their id).
zoo_paths = validate(zoopath.check_all)


@dataclass(frozen=True)
class Compute:
    """Where and how a daemon runs its codec."""

    device: str = field(default="auto", metadata=device_name)
    # What runs the codec's transforms: auto is OpenVINO on CPU when installed, else eager
    backend: str = field(default="auto", metadata=backend_name)
    threads: int = field(default=2, metadata=thread_count)
    # float16 transforms on CUDA; under device: auto without a GPU it is off (logged)
    half: bool = False

    def __post_init__(self) -> None:
        if self.half and self.device in ("cpu", "mps"):
            raise ConfigError(f"half: float16 runs on CUDA only, but device is {self.device}")


@dataclass(frozen=True)
class AuthKeys:
    """Where the shared key lives: a file or an environment variable (never the config itself,
    so configs can be shared and logged). Keys are used as bytes, surrounding whitespace cut."""

    auth_key_file: str | None = None
    auth_key_env: str | None = None

    def load_auth_key(self) -> bytes | None:
        """The key, or None when authentication is off; errors name the key, never its value."""
        if self.auth_key_file is not None and self.auth_key_env is not None:
            raise ConfigError("auth_key_file, auth_key_env: set one, not both")
        if self.auth_key_file is not None:
            try:
                key = Path(self.auth_key_file).read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"auth_key_file: cannot read {self.auth_key_file} ({exc.strerror})"
                ) from None
            return check_key(key.strip(), "auth_key_file")
        if self.auth_key_env is not None:
            value = os.environ.get(self.auth_key_env)
            if value is None:
                raise ConfigError(f"auth_key_env: ${self.auth_key_env} is not set")
            return check_key(os.fsencode(value).strip(), "auth_key_env")
        return None


@dataclass(frozen=True)
class SenderConfig(AuthKeys, Compute):
    http: str = field(default="127.0.0.1:7000", metadata=address)  # semnet send + /metrics
    data_to: str = field(default="127.0.0.1:7100", metadata=address)  # proxy (or receiver) UDP
    receiver_http: str = field(default="127.0.0.1:7201", metadata=address)  # reference channel
    codec: str = DEFAULT_CODEC  # a zoo codec's name, or the path of its manifest (.json)
    zoo: str | tuple[str, ...] = field(default=(), metadata=zoo_paths)
    # A rate point of an entropy-coded family instead (codec then names the family; the
    # default codec stands for cnn-rd): quality N picks <family>-qN, bpp the best point whose
    # measured bits per pixel on the wire are at most bpp.
    quality: int | None = field(
        default=None, metadata=check(lambda v: v is None or v >= 1, "must be >= 1")
    )
    bpp: float | None = field(
        default=None, metadata=check(lambda v: v is None or v > 0, "must be > 0")
    )
    partition: str = "channel"
    interleave: bool = True
    datagram_size: int = field(
        default=1200, metadata=check(lambda v: 100 <= v <= 65507, "must be in 100..65507")
    )
    quant: str | None = field(default=None, metadata=quant_kind)  # None: the codec's default
    bits: int | None = field(default=None, metadata=bit_width)
    importance: bool = False  # CAM importance byte per datagram (needs make metrics-extra)
    # Bit-planes sent apart, one importance class per datagram (a bit-interface codec over a
    # proxy's `link ... errors bits`, docs/interface.md); payload_check off lets payloads with
    # flipped bits through to the decoder (planes only; not with an auth key).
    planes: bool = False
    payload_check: bool = True
    stream: int = field(default=1, metadata=check(lambda v: 0 <= v < 65536, "must be a u16"))
    seed: int = field(default=1, metadata=check(lambda v: 0 <= v < 2**32, "must be a u32"))
    # None: from the clock, so a restart never reuses ids; a number pins the frame ids (and so
    # the interleaving) for online runs that must repeat exactly.
    first_frame: int | None = field(
        default=None, metadata=check(lambda v: v is None or 0 <= v < 2**32, "must be a u32")
    )
    rate_mbps: float = field(default=200.0, metadata=positive)  # pacing of datagrams
    report_timeout: float = field(default=15.0, metadata=positive)
    # A receiver report (reverse path) older than this is stale: the sender acts as if none came.
    feedback_timeout: float = field(default=2.0, metadata=positive)
    max_pixels: int = field(default=MAX_PIXELS, metadata=positive)  # largest image for /send


@dataclass(frozen=True)
class ProxyConfig(AuthKeys):
    listen: str = field(default="127.0.0.1:7100", metadata=address)
    forward: str = field(default="127.0.0.1:7200", metadata=address)
    http: str = field(default="127.0.0.1:7101", metadata=address)
    impair: str | dict[str, Any] = field(default="", metadata=impairment)  # forward (data)
    reverse: str | dict[str, Any] = field(default="", metadata=impairment)  # feedback
    seed: int = field(default=1, metadata=check(lambda v: 0 <= v < 2**32, "must be a u32"))
    record: str | None = None  # write the forward direction's fates to this trace file
    replay: str | None = None  # forward fates from this trace instead of `impair`
    # The source's bit interface (semnet zoo show NAME --interface --json > FILE) that a
    # `link ... errors bits` stage protects; also settable at run time (PUT /interface).
    interface: str | None = None

    def __post_init__(self) -> None:
        # recording over the trace being replayed would destroy it
        if (
            self.record
            and self.replay
            and Path(self.record).resolve() == Path(self.replay).resolve()
        ):
            raise ConfigError(f"record: {brief(self.record)} is the file being replayed")


def _fill(spec: str) -> object:
    from semnet.models.fill import get_fill  # torch: only a receiver config pays for it

    return get_fill(spec)


fill_spec = check(parses(_fill), "is not a fill (zero, mean, f0, diffusion[:T[:τ]])")


@dataclass(frozen=True)
class ReceiverConfig(AuthKeys, Compute):
    listen: str = field(default="127.0.0.1:7200", metadata=address)
    http: str = field(default="127.0.0.1:7201", metadata=address)  # reference + /metrics
    fill: str = field(default="zero", metadata=fill_spec)  # zero|mean|f0|diffusion[:T[:τ]]
    zoo: str | tuple[str, ...] = field(default=(), metadata=zoo_paths)
    perceptual: bool = True  # LPIPS and semantic accuracy per frame, when their weights exist
    # SSIM, MS-SSIM and the perceptual scores on every Nth frame of a stream, PSNR on all: at
    # 512x768 they cost about 0.4 CPU-s a frame, the codec's two transforms about 0.12.
    score_every: int = field(default=1, metadata=positive)
    deadline: float = field(default=0.5, metadata=deadline_range)  # s after a frame's 1st datagram
    # Folder for reconstructions; unset: $XDG_STATE_HOME/semnet/received (by default
    # ~/.local/state/semnet/received), never the folder the daemon happened to start in.
    output: str | None = None
    save_images: bool = True
    # The newest reconstructions kept in `output`: older ones are deleted past this many bytes.
    max_saved_bytes: int = field(default=256 * 2**20, metadata=positive)
    # Frames with no reference (nobody announced them on the signed side channel, nobody waits
    # for their report) are counted and dropped unless this is set: without a key, one forged
    # datagram would otherwise buy a full decode.
    decode_unannounced: bool = False
    max_frames: int = field(default=64, metadata=positive)
    max_bytes: int = field(default=64 * 2**20, metadata=positive)  # datagrams held in flight
    max_stream_frames: int = field(default=16, metadata=positive)  # frames in flight per stream
    max_pixels: int = field(default=MAX_PIXELS, metadata=positive)  # largest image decoded
    max_reference_bytes: int = field(default=64 * 2**20, metadata=positive)  # images held
    # Seconds between receiver reports per stream, over the reverse path; 0: none.
    report_interval: float = field(default=0.5, metadata=report_period)
    # Frames decoded together (from any streams): a batch closes at max_batch frames or
    # max_wait_ms after its first; 1 decodes each frame alone (the offline chain's bits).
    max_batch: int = field(default=1, metadata=check(lambda v: 1 <= v <= 64, "must be in 1..64"))
    max_wait_ms: float = field(
        default=0.0, metadata=check(lambda v: 0 <= v <= 1000, "must be in 0..1000 ms")
    )


def output_folder(output: str | None) -> Path:
    """Where a receiver saves its reconstructions."""
    if output is not None:
        return Path(output)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "semnet" / "received"


def load_config(cls: type, path: str | None, overrides: dict[str, Any]):
    """The file's keys (if any), then the CLI's non-None overrides, validated together."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return load(cls, data)
