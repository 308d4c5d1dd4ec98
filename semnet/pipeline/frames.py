"""One frame through the codec and the packet layer, sender side and receiver side."""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from semnet.core import coded, packetize, quant
from semnet.core.entropy import EntropyTables
from semnet.core.partition import parse_spec, spec_name
from semnet.core.reassembly import AssembledFrame
from semnet.core.wire import Datagram, FrameDescriptor, PartitionSpec, QuantKind, QuantSpec
from semnet.errors import ConfigError
from semnet.models import classifier, lpips
from semnet.models.codec import Codec
from semnet.models.fill import Fill
from semnet.models.metrics import ms_ssim, psnr, ssim
from semnet.pipeline.tensors import to_image, to_tensor

U32 = 2**32


@dataclass(frozen=True)
class PathSettings:
    """How frames are cut for the network: partition, interleaving, datagram size, quantizer."""

    partition: PartitionSpec = field(default_factory=lambda: parse_spec("channel"))
    interleave: bool = True
    datagram_size: int = 1200
    quant_kind: str | None = None  # None: the codec's default ("round", "uniform", "asymmetric")
    bits: int | None = None
    # Each datagram carries its semantic importance: the classifier's CAM averaged over the
    # datagram's elements (paper 002 eq. 23-27), for semantic-aware power allocation.
    importance: bool = False
    # Bit-planes sent apart, each datagram one importance class (paper 003; wire.FLAG_PLANES),
    # and whether the crc covers the payload (off: bit errors a wireless hop made reach the
    # decoder, UDP-Lite style).
    planes: bool = False
    payload_check: bool = True

    def __post_init__(self) -> None:
        if not self.payload_check and not self.planes:
            raise ConfigError("payload_check: off only for bit-planes (planes: true)")

    @property
    def partition_name(self) -> str:
        return spec_name(self.partition)


def frame_seed(seed: int, frame: int) -> int:
    """Interleaving seed of one frame: reproducible from (seed, frame), different per frame."""
    return (seed * 0x9E3779B1 + frame * 0x85EBCA6B + 1) % U32


@dataclass
class SentFrame:
    frame: int
    descriptor: FrameDescriptor
    datagrams: list[bytes]
    first_seq: int
    timings: dict[str, float]

    @property
    def bytes_sent(self) -> int:
        return sum(len(d) for d in self.datagrams)


class FrameEncoder:
    """Sender side: image -> latent -> quantized -> datagrams, numbering frames and sequences.

    A codec with an entropy model (``Codec.entropy_table``) is sent entropy coded, one stream per
    datagram (``semnet.core.coded``); its table fixes the quantizer, so no other may be asked for.

    Frame ids and sequence numbers count from ``first_frame`` and ``first_seq``; a daemon starts
    them where a previous run of it cannot have been (see semnet.daemons.sender.boot_numbers).
    With ``key`` every datagram is authenticated.
    """

    def __init__(
        self,
        codec: Codec,
        codec_id: int,
        path: PathSettings,
        stream: int = 1,
        seed: int = 0,
        device: torch.device | None = None,
        first_frame: int = 0,
        first_seq: int = 0,
        key: bytes | None = None,
    ) -> None:
        self.path = path
        self.stream, self.seed, self.key = stream, seed, key
        self.device = device or torch.device("cpu")
        self.next_frame, self.next_seq = first_frame % U32, first_seq % U32
        self.switch(codec, codec_id)

    def switch(self, codec: Codec, codec_id: int) -> None:
        """Send the next frames with another codec (a sender asked for another rate point);
        frame and sequence numbering go on."""
        tables = entropy_tables(codec)
        path = self.path
        if tables is not None and (path.quant_kind or path.bits):
            defaults = codec.quant
            if (path.quant_kind or defaults.kind) != defaults.kind or (
                path.bits or defaults.bits
            ) != defaults.bits:
                raise ConfigError(
                    f"quant: an entropy-coded codec is sent with its own {defaults.kind} "
                    f"{defaults.bits}-bit quantizer; leave quant and bits unset"
                )
        if tables is not None and path.planes:
            raise ConfigError("planes: an entropy-coded codec has no bit-planes to send apart")
        if self.key is not None and not path.payload_check:
            raise ConfigError("payload_check: the tag covers the payload; turn auth off for it")
        self.codec, self.codec_id, self.tables = codec, codec_id, tables
        self.quant_spec(np.array([-1.0, 1.0], np.float32))  # fails now, not per frame

    def quant_spec(self, y: np.ndarray) -> QuantSpec:
        """The quantizer for latent ``y``: the path's kind and bits, else the codec's."""
        defaults = self.codec.quant
        kind = QuantKind[(self.path.quant_kind or defaults.kind).upper()]
        bits = self.path.bits or defaults.bits
        fixed = kind is QuantKind.UNIFORM
        return quant.fit(
            kind,
            bits,
            y=None if fixed else y,
            lo=defaults.lo if fixed else None,
            hi=defaults.hi if fixed else None,
        )

    def encode(self, image: np.ndarray, end_index: int | None = None) -> SentFrame:
        """``end_index`` k: send only latent channels 0..k-1 (an A-MIJSCC codec's active
        prefix); the descriptor's latent says k, so the frame tells which index it used."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = self.codec.encode(to_tensor(image, self.device))[0].float().cpu().numpy()
        if end_index is not None:
            if not 0 < end_index <= y.shape[0]:
                raise ConfigError(f"end index {end_index} is not in 1..{y.shape[0]}")
            y = y[:end_index]
        t1 = time.perf_counter()
        spec = self.quant_spec(y)
        frame = self.next_frame
        desc = FrameDescriptor(
            codec_id=self.codec_id,
            image_h=image.shape[0],
            image_w=image.shape[1],
            latent=y.shape,
            quant=spec,
            partition=self.path.partition,
            interleave=self.path.interleave,
            seed=frame_seed(self.seed, frame),
            datagram_size=self.path.datagram_size,
            authenticated=self.key is not None,
            importance=self.path.importance,
            entropy=self.tables is not None,
            planes=self.path.planes,
            payload_checked=self.path.payload_check,
        )
        cam = None
        if self.path.importance:
            cam = classifier.cam(to_tensor(image, torch.device("cpu")), y.shape[1:]).numpy()
        q = quant.quantize(spec, y)
        first = self.next_seq
        if self.tables is not None:
            datagrams = coded.packetize(
                q, desc, self.tables, self.stream, frame, first, self.key, cam
            )
        else:
            importance = None if cam is None else packetize.datagram_importance(desc, cam)
            datagrams = packetize.packetize(
                q, desc, self.stream, frame, first, self.key, importance
            )
        t2 = time.perf_counter()
        sent = SentFrame(
            frame, desc, datagrams, self.next_seq, {"encode": t1 - t0, "packetize": t2 - t1}
        )
        self.next_frame = (frame + 1) % U32
        self.next_seq = (self.next_seq + len(datagrams)) % U32
        return sent


@dataclass
class DecodedFrame:
    stream: int
    frame: int
    image: np.ndarray
    received: int  # datagrams whose payload reached the latent
    count: int
    timings: dict[str, float]
    # Datagrams that arrived but whose entropy-coded payload did not decode, by reason: they
    # count as lost here, and the receiver moves them from accepted to malformed.
    dropped: Counter = field(default_factory=Counter)
    classes: list[dict] | None = None  # a multi-task codec's top classes from the latent

    @property
    def loss_ratio(self) -> float:
        return 1.0 - self.received / self.count


class FrameDecoder:
    """Receiver side: assembled datagrams -> latent + mask -> fill -> decode -> image."""

    def __init__(
        self, codec_for: Callable[[int], Codec], fill: Fill, device: torch.device | None = None
    ) -> None:
        self.codec_for, self.fill = codec_for, fill
        self.device = device or torch.device("cpu")
        self.tables: dict[int, EntropyTables | None] = {}

    def depacketize(self, frame: AssembledFrame) -> tuple[np.ndarray, np.ndarray, Counter]:
        """(q, received mask, reasons of datagrams dropped undecoded) of a frame, fixed-width
        or entropy coded as its descriptor says."""
        desc = frame.descriptor
        if desc.codec_id not in self.tables:
            self.tables[desc.codec_id] = entropy_tables(self.codec_for(desc.codec_id))
        tables = self.tables[desc.codec_id]
        if desc.entropy and tables is not None:
            return coded.depacketize(frame.datagrams.values(), desc, tables)
        if desc.entropy or tables is not None:  # a codec coded one way, a frame the other
            empty = np.zeros(desc.latent, np.uint16), np.zeros(desc.latent, bool)
            return *empty, Counter(entropy_table=frame.received)
        return *packetize.depacketize(frame.datagrams.values(), desc), Counter()

    def decode(self, frame: AssembledFrame) -> DecodedFrame:
        return self.decode_batch([frame])[0]

    def decode_batch(self, frames: list[AssembledFrame]) -> list[DecodedFrame]:
        """Decode frames together: each is depacketized and filled alone, then frames of one
        codec and size go through the synthesis transform as one batch (a GPU's throughput;
        on a CPU it gains little). A batch of one is the plain per-frame path."""
        t0 = time.perf_counter()
        filled, received, dropped, classes = [], [], [], []
        for frame in frames:
            desc = frame.descriptor
            codec = self.codec_for(desc.codec_id)
            q, mask, lost = self.depacketize(frame)
            y = torch.from_numpy(quant.dequantize(desc.quant, q))[None].to(self.device)
            got = torch.from_numpy(mask)[None].to(self.device)
            y, got = whole(codec, y, got)
            with torch.inference_mode():
                filled.append(self.fill(y, got, codec))
                classes.append(top_classes(codec, filled[-1], got))
            received.append(frame.received - sum(lost.values()))
            dropped.append(lost)
        t1 = time.perf_counter()
        images: list[np.ndarray | None] = [None] * len(frames)
        for group in batches(frames):
            desc = frames[group[0]].descriptor
            with torch.inference_mode():
                y = torch.cat([filled[i] for i in group])
                x = self.codec_for(desc.codec_id).decode(y, desc.image_h, desc.image_w)
            for i, one in zip(group, x.split(1), strict=True):
                images[i] = to_image(one)
        t2 = time.perf_counter()
        fill_time = (t1 - t0) / len(frames)
        return [
            DecodedFrame(
                f.stream,
                f.frame,
                images[i],
                received[i],
                f.count,
                {"depacketize_fill": fill_time, "decode": t2 - t1},
                dropped[i],
                classes[i],
            )
            for i, f in enumerate(frames)
        ]


def whole(codec: Codec, y: torch.Tensor, got: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A prefix frame's latent and mask (A-MIJSCC: only channels 0..k-1 were sent) padded to
    the codec's channels; the channels not sent count as not received."""
    missing = codec.latent_channels - y.shape[1]
    if missing <= 0:
        return y, got
    shape = (y.shape[0], missing, *y.shape[2:])
    return (
        torch.cat([y, y.new_zeros(shape)], dim=1),
        torch.cat([got, got.new_zeros(shape)], dim=1),
    )


def top_classes(codec: Codec, y: torch.Tensor, got: torch.Tensor, n: int = 5) -> list | None:
    """The n likeliest classes a multi-task codec reads from a filled latent, with their
    probabilities; None for a codec without a classifier."""
    if not hasattr(codec, "classify"):
        return None
    probs = torch.softmax(codec.classify(y, got).float(), dim=1)[0]
    top = probs.topk(min(n, probs.numel()))
    names = codec.class_names
    return [
        {"label": names[int(i)], "p": round(float(p), 4)}
        for p, i in zip(top.values, top.indices, strict=True)
    ]


def reference_class(codec: Codec, image: np.ndarray, device: torch.device) -> str | None:
    """The top class a multi-task codec reads from an image's whole latent (every channel,
    nothing lost): what the received latent's class is checked against. None without one."""
    if not hasattr(codec, "classify"):
        return None
    with torch.inference_mode():
        y = codec.encode(to_tensor(image, device))
        top = top_classes(codec, y, torch.ones_like(y, dtype=torch.bool), n=1)
    return top[0]["label"]


def batches(frames: list[AssembledFrame]) -> list[list[int]]:
    """Indices of the frames that can share one synthesis call: same codec, latent and size."""
    groups: dict[tuple, list[int]] = {}
    for i, f in enumerate(frames):
        d = f.descriptor
        groups.setdefault((d.codec_id, d.latent, d.image_h, d.image_w), []).append(i)
    return list(groups.values())


def entropy_tables(codec: Codec) -> EntropyTables | None:
    """The coder's tables for a codec with an entropy model, None for a fixed-rate one."""
    table = codec.entropy_table()
    return None if table is None else EntropyTables(table)


def lost_frame(dg: Datagram) -> AssembledFrame:
    """A frame none of whose datagrams arrived, known from one of them (the receiver gets it on
    the reference channel): it is decoded from fill alone."""
    return AssembledFrame(
        dg.stream,
        dg.frame,
        dg.descriptor,
        {},
        dg.count,
        complete=False,
        first_arrival=0.0,
        last_arrival=0.0,
    )


def perceptual_available() -> bool:
    """LPIPS and semantic accuracy need the optional offline weights (``make metrics-extra``)."""
    return lpips.available() and classifier.available()


# AlexNet's strides leave nothing of a smaller image to compare: no LPIPS or semantic score.
PERCEPTUAL_MIN_SIDE = 32


def score(
    image: np.ndarray, reference: np.ndarray, perceptual: bool = False, full: bool = True
) -> dict:
    """PSNR (dB), SSIM and MS-SSIM (None under MS_SSIM_MIN_SIDE) of a reconstruction against
    its reference, both uint8 H x W x 3; with ``perceptual`` also LPIPS-AlexNet and semantic
    agreement (the classifier's top-1 label on both is the same), None where their weights are
    not installed or the image is smaller than PERCEPTUAL_MIN_SIDE. Not ``full``: PSNR alone
    (the rest None), a thousandth of the cost (a receiver scoring a sample of its frames)."""
    a, b = to_tensor(image, torch.device("cpu")), to_tensor(reference, torch.device("cpu"))
    if not full:
        skipped = ("ssim", "ms_ssim", *(("lpips", "semantic_agree") if perceptual else ()))
        return {"psnr_db": psnr(a, b), **dict.fromkeys(skipped)}
    quality: dict = {"psnr_db": psnr(a, b), "ssim": ssim(a, b), "ms_ssim": ms_ssim(a, b)}
    if perceptual and min(image.shape[:2]) < PERCEPTUAL_MIN_SIDE:
        quality["lpips"] = quality["semantic_agree"] = None
    elif perceptual:
        with torch.inference_mode():
            quality["lpips"] = lpips.lpips(a, b) if lpips.available() else None
            quality["semantic_agree"] = classifier.agrees(a, b) if classifier.available() else None
    return quality
