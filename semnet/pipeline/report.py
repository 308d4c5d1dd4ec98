"""One frame's report: the same record whether the offline chain, the receiver or the sender
made it, so a sweep row, a receiver's answer and `semnet send --json` name things alike.

The receiver fills the decoding side, the sender adds its own (bytes, bpp, first sequence
number, the latest receiver report) on top of what the receiver answered, and the offline chain
fills both at once and keeps the decoded image. On the wire (HTTP JSON) the image never
travels, every other field does, and ``error`` appears only when the frame failed: a client asks
``"error" in report``.
"""

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from semnet.config import brief
from semnet.errors import SemnetError

QUALITY = ("psnr_db", "ssim", "ms_ssim", "lpips", "semantic_agree")


@dataclass(kw_only=True)
class FrameReport:
    frame: int
    datagrams_sent: int
    stream: int = 0
    name: str | None = None
    codec: str | None = None
    fill: str | None = None
    first_seq: int | None = None  # to match the frame against proxy fate traces
    datagrams_received: int | None = None
    datagrams_malformed: dict[str, int] = field(default_factory=dict)
    bytes_sent: int | None = None
    bpp: float | None = None
    loss_ratio: float | None = None
    psnr_db: float | None = None  # the quality fields are None without a reference to score
    ssim: float | None = None
    ms_ssim: float | None = None  # None on images too small for its 5 scales
    lpips: float | None = None  # with perceptual scoring (see semnet.pipeline.frames.score)
    semantic_agree: bool | None = None
    # a multi-task codec's top classes read from the latent: [{"label": str, "p": float}, ...]
    classes: list[dict] | None = None
    # whether its top class is the one the codec reads from the reference's whole latent
    task_agree: bool | None = None
    end_index: int | None = None  # the active prefix an A-MIJSCC sender chose (None: all sent)
    saved: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    receiver_report: dict | None = None  # the sender's latest RTCP-like report of the stream
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)  # never on the wire

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The wire form: every field but the image, ``error`` only when there is one."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        if self.error is None:
            del out["error"]
        return out

    @classmethod
    def from_json(cls, msg: object) -> "FrameReport":
        """A report another daemon sent; SemnetError naming the first field of the wrong type.
        Unknown keys are ignored, so a newer receiver still reports to an older sender."""
        if not isinstance(msg, dict):
            raise SemnetError(f"a frame report is a JSON object, not {type(msg).__name__}")
        kwargs = {}
        for f in fields(cls):
            if f.name == "image" or f.name not in msg:
                continue
            value = msg[f.name]
            if not any(_is(value, kind) for kind in _KINDS[f.name]):
                raise SemnetError(f"frame report field {f.name!r}: {brief(value)} is not {f.type}")
            kwargs[f.name] = value
        for name in ("frame", "datagrams_sent"):
            if name not in kwargs:
                raise SemnetError(f"frame report lacks {name!r}")
        return cls(**kwargs)


_INT, _NUM, _STR, _BOOL = "int", "num", "str", "bool"
# what JSON may carry in each field; None: null allowed
_KINDS: dict[str, tuple[str | None, ...]] = {
    "frame": (_INT,),
    "datagrams_sent": (_INT,),
    "stream": (_INT,),
    "name": (_STR, None),
    "codec": (_STR, None),
    "fill": (_STR, None),
    "first_seq": (_INT, None),
    "datagrams_received": (_INT, None),
    "datagrams_malformed": ("counts",),
    "bytes_sent": (_INT, None),
    "bpp": (_NUM, None),
    "loss_ratio": (_NUM, None),
    **{name: (_NUM, None) for name in QUALITY if name != "semantic_agree"},
    "semantic_agree": (_BOOL, None),
    "classes": ("classes", None),
    "task_agree": (_BOOL, None),
    "end_index": (_INT, None),
    "saved": (_STR, None),
    "timings": ("timings",),
    "receiver_report": ("object", None),
    "error": (_STR, None),
}


def _is(value: object, kind: str | None) -> bool:
    if kind is None:
        return value is None
    if kind == _BOOL:
        return isinstance(value, bool)
    if isinstance(value, bool):  # JSON true is not a count or a quality
        return False
    if kind == _INT:
        return isinstance(value, int)
    if kind == _NUM:
        return isinstance(value, int | float)
    if kind == _STR:
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "classes":
        return isinstance(value, list) and all(
            isinstance(c, dict)
            and set(c) == {"label", "p"}
            and _is(c["label"], _STR)
            and _is(c["p"], _NUM)
            for c in value
        )
    number = _INT if kind == "counts" else _NUM
    return isinstance(value, dict) and all(
        isinstance(k, str) and _is(v, number) for k, v in value.items()
    )
