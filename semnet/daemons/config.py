"""Daemon configs (configs/*.yaml). A CLI flag overrides the file; every key is validated."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semnet.config import check, load, read_yaml
from semnet.daemons.net import parse_address
from semnet.errors import ConfigError


def _is_address(value: str) -> bool:
    try:
        parse_address(value)
    except ConfigError:
        return False
    return True


address = check(_is_address, "is not host:port")
positive = check(lambda v: v > 0, "must be > 0")


@dataclass(frozen=True)
class SenderConfig:
    http: str = field(default="127.0.0.1:7000", metadata=address)  # semnet send + /metrics
    data_to: str = field(default="127.0.0.1:7100", metadata=address)  # proxy (or receiver) UDP
    receiver_http: str = field(default="127.0.0.1:7201", metadata=address)  # reference channel
    codec: str = "cnn-c64"
    partition: str = "channel"
    interleave: bool = True
    datagram_size: int = field(
        default=1200, metadata=check(lambda v: 100 <= v <= 65507, "must be in 100..65507")
    )
    quant: str | None = None  # round | uniform | asymmetric; None: the codec's default
    bits: int | None = None
    stream: int = field(default=1, metadata=check(lambda v: 0 <= v < 65536, "must be a u16"))
    seed: int = field(default=1, metadata=check(lambda v: 0 <= v < 2**32, "must be a u32"))
    rate_mbps: float = field(default=200.0, metadata=positive)  # pacing of datagrams
    report_timeout: float = field(default=15.0, metadata=positive)
    device: str = "auto"
    threads: int = field(default=2, metadata=check(lambda v: v >= 0, "must be >= 0"))


@dataclass(frozen=True)
class ProxyConfig:
    listen: str = field(default="127.0.0.1:7100", metadata=address)
    forward: str = field(default="127.0.0.1:7200", metadata=address)
    http: str = field(default="127.0.0.1:7101", metadata=address)
    impair: str | dict[str, Any] = ""  # netem spec for the forward (data) direction
    reverse: str | dict[str, Any] = ""  # netem spec for the reverse (feedback) direction
    seed: int = field(default=1, metadata=check(lambda v: 0 <= v < 2**32, "must be a u32"))
    record: str | None = None  # write the forward direction's fates to this trace file
    replay: str | None = None  # forward fates from this trace instead of `impair`

    def __post_init__(self) -> None:
        # recording over the trace being replayed would destroy it
        if (
            self.record
            and self.replay
            and Path(self.record).resolve() == Path(self.replay).resolve()
        ):
            raise ConfigError(f"record: {self.record!r} is the file being replayed")


@dataclass(frozen=True)
class ReceiverConfig:
    listen: str = field(default="127.0.0.1:7200", metadata=address)
    http: str = field(default="127.0.0.1:7201", metadata=address)  # reference + /metrics
    fill: str = "zero"
    deadline: float = field(
        default=0.5, metadata=positive
    )  # seconds after a frame's first datagram
    output: str = "received"  # folder for reconstructions
    save_images: bool = True
    max_frames: int = field(default=64, metadata=positive)
    max_bytes: int = field(default=64 * 2**20, metadata=positive)
    device: str = "auto"
    threads: int = field(default=2, metadata=check(lambda v: v >= 0, "must be >= 0"))


def load_config(cls: type, path: str | None, overrides: dict[str, Any]):
    """The file's keys (if any), then the CLI's non-None overrides, validated together."""
    data = read_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return load(cls, data)
