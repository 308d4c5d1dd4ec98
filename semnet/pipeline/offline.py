"""The whole chain in one process: the impairment model applied to the datagram list in memory.

Same encoder, impairment, reassembler and decoder as the daemons, no sockets; datagrams leave at
a fixed pacing interval and reach the reassembler in release order. Same seed, same result, bit
for bit — which is what makes paired sweeps possible.
"""

import numpy as np

from semnet.core.impair import ImpairModel
from semnet.core.reassembly import Reassembler
from semnet.core.wire import parse
from semnet.pipeline.frames import FrameDecoder, FrameEncoder, SentFrame, lost_frame, score
from semnet.pipeline.report import FrameReport


def deliver(sent: SentFrame, impairment: ImpairModel, start: float, interval: float) -> list:
    """Datagrams as the receiver would see them: (arrival time, bytes), in arrival order."""
    impairment.feed_frame(sent.datagrams)  # a link stage queues its slots; others ignore it
    arrivals = []
    for i, data in enumerate(sent.datagrams):
        for e in impairment.process(data, start + i * interval):
            arrivals.append((e.release_at, len(arrivals), e.data))
    arrivals.sort()
    return [(t, data) for t, _, data in arrivals]


def transmit(
    image: np.ndarray,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    impairment: ImpairModel,
    start: float = 0.0,
    interval: float = 1e-4,
    perceptual: bool = False,
) -> FrameReport:
    """Send one image through encoder -> impairment -> reassembler -> decoder and score it
    (``perceptual``: LPIPS and semantic agreement too)."""
    sent = encoder.encode(image)
    reassembler = Reassembler(deadline=float("inf"))
    frames = []
    for t, data in deliver(sent, impairment, start, interval):
        frames += reassembler.ingest(data, t)
    frames += reassembler.flush()
    h, w = image.shape[:2]
    ours = [f for f in frames if f.frame == sent.frame] or [lost_frame(parse(sent.datagrams[0]))]
    decoded = decoder.decode(ours[0])
    quality = score(decoded.image, image, perceptual)
    return FrameReport(
        stream=ours[0].stream,
        frame=sent.frame,
        first_seq=sent.first_seq,
        datagrams_sent=len(sent.datagrams),
        datagrams_received=decoded.received,
        datagrams_malformed=dict(decoded.dropped),
        bytes_sent=sent.bytes_sent,
        bpp=8 * sent.bytes_sent / (h * w),
        loss_ratio=decoded.loss_ratio,
        image=decoded.image,
        classes=decoded.classes,
        timings={**sent.timings, **decoded.timings},
        **quality,
    )
