"""Receiver daemon: reassemble, fill, decode, score against the reference, save, report, export.

UDP datagrams are drained straight into the reassembler (no coroutine per datagram). Decoding
runs on one worker thread so the socket keeps draining meanwhile. The sender posts each frame's
reference image on the HTTP side channel (which bypasses the proxy) before sending datagrams,
then asks for the frame's report; a frame whose datagrams were all lost is decoded from fill
alone once the report wait runs out, so every announced frame is reported.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import torch
from aiohttp import web
from prometheus_client import CollectorRegistry

from semnet.core.reassembly import AssembledFrame, Reassembler
from semnet.core.wire import parse
from semnet.daemons.config import ReceiverConfig
from semnet.daemons.metrics import FrameQuality, LiveCounters, Sample
from semnet.daemons.net import drain, format_address, parse_address, udp_socket
from semnet.daemons.service import metrics_route, serve_http
from semnet.errors import SemnetError
from semnet.images import save_png
from semnet.models import zoo
from semnet.models.fill import get_fill
from semnet.pipeline.frames import FrameDecoder, lost_frame, score
from semnet.pipeline.tensors import pick_device

log = logging.getLogger("semnet.receiver")
MAX_REFERENCES = 64
LOST_GRACE = 1.0  # seconds past the deadline before an announced frame with nothing is lost


@dataclass
class Reference:
    name: str
    image: np.ndarray
    first_datagram: bytes  # its descriptor lets a wholly lost frame still be decoded
    count: int
    report: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Receiver:
    def __init__(self, cfg: ReceiverConfig) -> None:
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.fill_name = cfg.fill
        self.decoder = FrameDecoder(self.codec_for, get_fill(cfg.fill), self.device)
        self.reassembler = Reassembler(cfg.deadline, cfg.max_frames, cfg.max_bytes)
        self.references: OrderedDict[tuple[int, int], Reference] = OrderedDict()
        self.received = 0
        self.bytes_received = 0
        self.frames_decoded = 0
        self.frames_lost = 0
        self.references_evicted = 0
        self.registry = CollectorRegistry()
        self.registry.register(LiveCounters(self.samples))
        self.quality = FrameQuality(self.registry)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="decode")
        self.queue: asyncio.Queue[AssembledFrame] = asyncio.Queue()
        self.timer: asyncio.TimerHandle | None = None

    def codec_for(self, codec_id: int):
        return zoo.load(zoo.entry_by_id(codec_id).name).to(self.device)

    # -- datagrams ------------------------------------------------------------------------
    def on_datagram(self, data: bytes, addr: tuple) -> None:
        self.received += 1
        self.bytes_received += len(data)
        self.enqueue(self.reassembler.ingest(data, time.monotonic()))

    def enqueue(self, frames: list[AssembledFrame]) -> None:
        for f in frames:
            self.queue.put_nowait(f)
        self.arm_timer()

    def arm_timer(self) -> None:
        deadline = self.reassembler.next_deadline()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self.timer = asyncio.get_running_loop().call_later(delay, self.on_deadline)

    def on_deadline(self) -> None:
        self.timer = None
        self.enqueue(self.reassembler.poll(time.monotonic()))

    # -- decoding ---------------------------------------------------------------------------
    async def decode_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.queue.get()
            try:
                report = await loop.run_in_executor(self.worker, self.finish, frame)
            except SemnetError as exc:  # e.g. a codec id the zoo does not have
                log.warning("frame %d of stream %d dropped: %s", frame.frame, frame.stream, exc)
                continue
            ref = self.references.pop((frame.stream, frame.frame), None)
            if ref is not None and not ref.report.done():
                ref.report.set_result(report)

    def finish(self, frame: AssembledFrame) -> dict:
        """Decode, score, save and count one frame (on the worker thread)."""
        decoded = self.decoder.decode(frame)
        ref = self.references.get((frame.stream, frame.frame))
        quality = (
            score(decoded.image, ref.image)
            if ref is not None and ref.image.shape == decoded.image.shape
            else {}
        )
        name = ref.name if ref is not None else f"s{frame.stream}-f{frame.frame}"
        saved = None
        if self.cfg.save_images:
            stem = Path(name).stem
            saved = str(
                save_png(
                    decoded.image,
                    Path(self.cfg.output) / f"{frame.stream}-{frame.frame:06d}-{stem}.png",
                ).resolve()
            )
        codec = zoo.entry_by_id(frame.descriptor.codec_id).name
        latency = time.monotonic() - frame.first_arrival if frame.datagrams else 0.0
        self.quality.observe(
            codec,
            self.fill_name,
            decoded.loss_ratio,
            latency,
            quality.get("psnr_db"),
            quality.get("ssim"),
        )
        self.frames_decoded += 1
        report = {
            "stream": frame.stream,
            "frame": frame.frame,
            "name": name,
            "codec": codec,
            "fill": self.fill_name,
            "datagrams_sent": frame.count,
            "datagrams_received": decoded.received,
            "loss_ratio": decoded.loss_ratio,
            "psnr_db": quality.get("psnr_db"),
            "ssim": quality.get("ssim"),
            "saved": saved,
            "timings": decoded.timings,
        }
        log.info(
            "frame %d stream %d: %d/%d datagrams, loss %.3f, PSNR %s dB, SSIM %s",
            frame.frame,
            frame.stream,
            decoded.received,
            frame.count,
            decoded.loss_ratio,
            _fmt(quality.get("psnr_db")),
            _fmt(quality.get("ssim")),
        )
        return report

    # -- side channel ---------------------------------------------------------------------
    async def post_reference(self, request: web.Request) -> web.Response:
        try:
            msg = msgpack.unpackb(await request.read())
            key = (int(msg["stream"]), int(msg["frame"]))
            h, w = int(msg["height"]), int(msg["width"])
            image = np.frombuffer(msg["image"], dtype=np.uint8).reshape(h, w, 3)
            first = bytes(msg["first_datagram"])
            parse(first)
            ref = Reference(str(msg["name"]), image, first, int(msg["count"]))
        except (ValueError, KeyError, TypeError, SemnetError, msgpack.UnpackException) as exc:
            raise web.HTTPBadRequest(text=f"bad reference: {exc}") from None
        self.references[key] = ref
        while len(self.references) > MAX_REFERENCES:
            _, old = self.references.popitem(last=False)
            self.references_evicted += 1
            if not old.report.done():
                old.report.cancel()
        return web.json_response({"ok": True})

    async def get_report(self, request: web.Request) -> web.Response:
        key = (int(request.match_info["stream"]), int(request.match_info["frame"]))
        ref = self.references.get(key)
        if ref is None:
            raise web.HTTPNotFound(text="no reference for this frame (evicted or never posted)")
        wait = self.cfg.deadline + LOST_GRACE
        try:
            report = await asyncio.wait_for(asyncio.shield(ref.report), wait)
        except TimeoutError:
            if self.reassembler.is_pending(*key):
                report = await asyncio.shield(ref.report)
            else:  # nothing arrived at all: decode from fill alone
                self.frames_lost += 1
                self.queue.put_nowait(lost_frame(parse(ref.first_datagram)))
                report = await asyncio.shield(ref.report)
        except asyncio.CancelledError:
            raise web.HTTPGone(text="reference evicted before the frame was decoded") from None
        return web.json_response(report)

    def samples(self):
        c = self.reassembler.counters
        yield Sample(
            "datagrams_received_total", "Datagrams that reached the receiver socket", self.received
        )
        yield Sample(
            "receiver_bytes_received_total",
            "Bytes that reached the receiver socket",
            self.bytes_received,
        )
        for reason, n in sorted(c.malformed_by_reason.items()):
            yield Sample(
                "receiver_datagrams_malformed_total",
                "Malformed datagrams dropped",
                n,
                (("reason", reason),),
            )
        yield Sample(
            "receiver_datagrams_duplicate_total", "Duplicate datagrams dropped", c.duplicates
        )
        yield Sample(
            "receiver_datagrams_late_total", "Datagrams for frames already decoded", c.late
        )
        yield Sample(
            "receiver_datagrams_reordered_total", "Datagrams older than the newest", c.reordered
        )
        yield Sample("frames_decoded_total", "Frames decoded", self.frames_decoded)
        yield Sample(
            "receiver_frames_incomplete_total",
            "Frames decoded with datagrams missing",
            c.frames_incomplete,
        )
        yield Sample(
            "receiver_frames_lost_total",
            "Announced frames of which nothing arrived",
            self.frames_lost,
        )
        yield Sample(
            "receiver_frames_evicted_total", "Frames cut short by the memory caps", c.evicted_frames
        )
        yield Sample(
            "receiver_frames_pending",
            "Frames being reassembled",
            self.reassembler.pending_frames,
            kind="gauge",
        )
        yield Sample(
            "receiver_bytes_buffered",
            "Bytes held by the reassembler",
            self.reassembler.buffered_bytes,
            kind="gauge",
        )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


async def serve(cfg: ReceiverConfig, stop: asyncio.Event) -> None:
    rx = Receiver(cfg)
    sock = udp_socket(parse_address(cfg.listen, "listen"))
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), drain(sock, rx.on_datagram))
    app = web.Application(client_max_size=256 * 2**20)
    app.add_routes(
        [
            metrics_route(rx.registry),
            web.post("/reference", rx.post_reference),
            web.get("/report/{stream:\\d+}/{frame:\\d+}", rx.get_report),
        ]
    )
    runner = await serve_http(app, *parse_address(cfg.http, "http"))
    worker = asyncio.create_task(rx.decode_forever())
    log.info(
        "receiver: datagrams on %s, http on %s, fill %s",
        format_address(sock.getsockname()),
        cfg.http,
        cfg.fill,
    )
    try:
        await stop.wait()
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
        worker.cancel()
        await runner.cleanup()
        rx.worker.shutdown(wait=True, cancel_futures=True)
        log.info(
            "receiver stopped: %d datagrams, %d frames decoded", rx.received, rx.frames_decoded
        )
