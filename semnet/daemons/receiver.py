"""Receiver daemon: reassemble, fill, decode, score against the reference, save, report, export.

UDP datagrams are drained straight into the reassembler (no coroutine per datagram). Decoding
runs on one worker thread so the socket keeps draining meanwhile. The sender posts each frame's
reference image on the HTTP side channel (which bypasses the proxy) before sending datagrams,
then asks for the frame's report; a frame whose datagrams were all lost is decoded from fill
alone once the report wait runs out, so every announced frame is reported.

Hostile input costs counters, not memory, CPU or disk: the reassembler's caps bound datagrams
in flight; only frames with a reference (announced on the side channel, a sender waits for them)
are decoded, unless ``decode_unannounced`` (then at most BACKLOG of those wait, more are
dropped, counted); a frame is decoded only if its descriptor is what its codec makes of an
image of at most ``max_pixels``; references are capped in number and bytes; saved images in
bytes (``max_saved_bytes``, oldest deleted first); warnings per reason in rate. With a key,
datagrams and control requests must be authenticated.

Every ``report_interval`` a receiver report (semnet.core.feedback) goes out for each stream heard
since its last one, from the listening socket to where the stream's datagrams came from: the
proxy, whose reverse direction takes it back to the sender. Signed when a key is set.
"""

import asyncio
import logging
import socket
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import torch
from aiohttp import web

from semnet.core import feedback
from semnet.core.reassembly import (
    EVICTION_CAPS,
    MALFORMED_REASONS,
    AssembledFrame,
    Reassembler,
)
from semnet.core.wire import MAGIC, MAX_COUNT, VERSION, Datagram, parse
from semnet.daemons.config import ReceiverConfig, output_folder
from semnet.daemons.metrics import FrameQuality, LiveCounters, Sample, by_reason
from semnet.daemons.net import (
    drain,
    format_address,
    parse_address,
    socket_inode,
    udp_drops,
    udp_socket,
)
from semnet.daemons.saved import SavedImages
from semnet.daemons.service import control_app, daemon_registry, metrics_route, serve_http
from semnet.daemons.throttle import LogThrottle
from semnet.errors import SemnetError
from semnet.models import backends, zoo, zoopath
from semnet.models.fill import get_fill
from semnet.pipeline.frames import (
    PERCEPTUAL_MIN_SIDE,
    DecodedFrame,
    FrameDecoder,
    lost_frame,
    perceptual_available,
    reference_class,
    score,
)
from semnet.pipeline.report import FrameReport
from semnet.pipeline.tensors import pick_device

log = logging.getLogger("semnet.receiver")
MAX_REFERENCES = 64
LOST_GRACE = 1.0  # seconds past the deadline before an announced frame with nothing is lost
BACKLOG = 4  # frames without a reference waiting for the decoder; nobody waits for their report
ORPHAN_AFTER = 10.0  # seconds past deadline + grace: a frame nobody asked about is given up
DROP_REASONS = ("unannounced", "backlog", "undecodable", "decode_error")
MAX_STREAM_LABELS = 64  # streams whose datagrams are counted apart; the rest count as "other"
DATA_PREFIX = bytes((MAGIC, VERSION))  # the stream field (bytes 4..5) follows only this


@dataclass
class Reference:
    name: str
    image: np.ndarray | None  # released once the frame is decoded; the report stays
    first_datagram: bytes  # its descriptor lets a wholly lost frame still be decoded
    count: int
    pace: float  # seconds per byte the sender paces the frame at; 0: not said
    report: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    queued: bool = False  # its frame (or, given up, a fill-only stand-in) went to the decoder


class Receiver:
    def __init__(self, cfg: ReceiverConfig) -> None:
        self.cfg = cfg
        zoopath.use(zoopath.as_list(cfg.zoo))  # its zoos first, for every codec lookup
        self.key = cfg.load_auth_key()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.fill_name = cfg.fill
        self.perceptual = cfg.perceptual and perceptual_available()
        self.scored: dict[int, int] = {}  # frames scored per stream, for score_every
        self.decoder = FrameDecoder(self.codec_for, get_fill(cfg.fill), self.device)
        self.reassembler = Reassembler(
            cfg.deadline,
            cfg.max_frames,
            cfg.max_bytes,
            max_stream_frames=cfg.max_stream_frames,
            key=self.key,
        )
        self.references: OrderedDict[tuple[int, int], Reference] = OrderedDict()
        self.reference_bytes = 0
        self.received = 0
        self.stream_received: dict[bytes, int] = {b"": 0}  # by the header's stream; b"": other
        self.bytes_received = 0
        self.frames_decoded = 0
        self.batches = 0  # synthesis calls: frames_decoded / batches is the mean batch size
        self.frames_lost = 0
        self.frames_dropped: dict[str, int] = {}  # delivered by the reassembler, not decoded
        self.references_evicted = 0
        self.saved = SavedImages(output_folder(cfg.output), cfg.max_saved_bytes)
        self.warnings = LogThrottle(log)
        self.registry = daemon_registry("receiver")
        self.registry.register(LiveCounters(self.samples))
        self.quality = FrameQuality(self.registry)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="decode")
        self.urgent: deque[AssembledFrame] = deque()  # someone waits for their report
        self.backlog: deque[AssembledFrame] = deque()
        self.wake = asyncio.Event()
        self.timer: asyncio.TimerHandle | None = None
        self.sock_inode: int | None = None
        # From the wall clock in ms, like the sender's boot numbers: a restarted receiver's
        # reports are ahead of its last run's in the sender's replay window.
        self.report_number = time.time_ns() // 10**6 % 2**32
        self.reports_sent = self.report_errors = 0

    # -- receiver reports -----------------------------------------------------------------
    async def report_forever(self, sock: socket.socket) -> None:
        while True:
            await asyncio.sleep(self.cfg.report_interval)
            self.send_reports(sock)

    def send_reports(self, sock: socket.socket) -> None:
        """One report per stream heard since its last, back where its datagrams came from."""
        for stream, tracker, stats in self.reassembler.heard():
            report = stats.report(stream, self.report_number, tracker)
            self.report_number = (self.report_number + 1) % 2**32
            if stats.source is None:
                continue
            try:
                sock.sendto(feedback.encode(report, self.key), stats.source)
                self.reports_sent += 1
            except OSError as exc:  # e.g. a full send buffer: the next interval brings news
                self.report_errors += 1
                self.warnings.warning("report", "report to %s failed: %s", stats.source, exc)

    def codec_for(self, codec_id: int):
        """The codec a frame names, on this receiver's device and backend (compiled once)."""
        name = zoo.entry_by_id(codec_id).name
        cfg = self.cfg
        return backends.load(name, cfg.backend, str(self.device), cfg.threads, cfg.half)

    # -- datagrams ------------------------------------------------------------------------
    def on_datagram(self, data: bytes, addr: tuple) -> None:
        self.received += 1
        self.stream_received[self.stream_slot(data[4:6] if data[:2] == DATA_PREFIX else b"")] += 1
        self.bytes_received += len(data)
        self.enqueue(self.reassembler.ingest(data, time.monotonic(), addr))

    def stream_slot(self, key: bytes) -> bytes:
        """The key a stream field's datagrams are counted under: its own (from 0, created here)
        for the first MAX_STREAM_LABELS streams, else other (b"")."""
        if key not in self.stream_received:
            if len(key) != 2 or len(self.stream_received) > MAX_STREAM_LABELS:
                return b""
            self.stream_received[key] = 0
        return key

    def enqueue(self, frames: list[AssembledFrame]) -> None:
        for f in frames:
            self.schedule(f)
        self.arm_timer()

    def schedule(self, frame: AssembledFrame) -> None:
        """Queue a frame for decoding: first in line if a report waits for it, else in the
        bounded backlog, else dropped (a flood of bogus frames must not queue without end)."""
        ref = self.references.get((frame.stream, frame.frame))
        if ref is not None:
            ref.queued = True
            self.urgent.append(frame)
        elif not self.cfg.decode_unannounced:
            self.count_dropped("unannounced")
            return
        elif len(self.backlog) < BACKLOG:
            self.backlog.append(frame)
        else:
            self.count_dropped("backlog")
            return
        self.wake.set()

    def count_dropped(self, reason: str) -> None:
        self.frames_dropped[reason] = self.frames_dropped.get(reason, 0) + 1

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
            batch = await self.next_batch()
            results = await loop.run_in_executor(self.worker, self.finish_batch, batch)
            for frame, result in zip(batch, results, strict=True):
                if isinstance(result, FrameReport):
                    report = result
                    for reason, n in report.datagrams_malformed.items():  # on the loop thread
                        self.reassembler.counters.reclassify_malformed(reason, n)
                elif isinstance(result, SemnetError):  # a codec id the zoo lacks, a bad size
                    report = self.undecodable(frame, "undecodable", result)
                else:  # a bug must not stop the decoding of every later frame
                    log.debug("decoding frame %d failed", frame.frame, exc_info=result)
                    report = self.undecodable(frame, "decode_error", result)
                ref = self.references.get((frame.stream, frame.frame))
                if ref is not None and not ref.report.done():
                    self.release(ref)
                    ref.report.set_result(report)

    def warm(self) -> None:
        """Load (and compile) the default codec and the scoring models before the first frame
        needs them, so that frame does not pay seconds of it (on the worker, ahead of frames)."""
        try:
            self.codec_for(zoo.entry(zoo.DEFAULT_CODEC).codec_id)
            tiny = np.zeros((PERCEPTUAL_MIN_SIDE, PERCEPTUAL_MIN_SIDE, 3), np.uint8)
            score(tiny, tiny, self.perceptual)
        except Exception as exc:  # a zoo without the default codec: frames will say what fails
            log.info("warm-up skipped: %s", exc)

    async def next_batch(self) -> list[AssembledFrame]:
        """The frames to decode together: those queued (awaited reports first), up to
        max_batch, waiting at most max_wait_ms after the first for more to arrive."""
        while not (self.urgent or self.backlog):
            self.wake.clear()
            await self.wake.wait()
        batch = [(self.urgent or self.backlog).popleft()]
        closes = time.monotonic() + self.cfg.max_wait_ms / 1000
        while len(batch) < self.cfg.max_batch:
            if self.urgent or self.backlog:
                batch.append((self.urgent or self.backlog).popleft())
                continue
            left = closes - time.monotonic()
            if left <= 0:
                break
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), left)
            except TimeoutError:
                break
        return batch

    def finish_batch(self, frames: list[AssembledFrame]) -> list[FrameReport | Exception]:
        """Check, decode together, then score, save and count each frame (on the worker
        thread); a frame that fails gets its exception in its place, the others go on."""
        refused: list[SemnetError | None] = []
        for frame in frames:
            try:
                self.check_decodable(frame)
                refused.append(None)
            except SemnetError as exc:
                refused.append(exc)
        ready = [f for f, why in zip(frames, refused, strict=True) if why is None]
        decoded = iter(self.decode_each(ready))
        results: list[FrameReport | Exception] = []
        for frame, why in zip(frames, refused, strict=True):
            if why is not None:
                results.append(why)
                continue
            one = next(decoded)
            try:
                results.append(one if isinstance(one, Exception) else self.finish(frame, one))
            except Exception as exc:
                results.append(exc)
        self.batches += bool(ready)
        return results

    def decode_each(self, frames: list[AssembledFrame]) -> list[DecodedFrame | Exception]:
        """The frames decoded as one batch; should that fail, each alone, so that one bad frame
        fails only itself."""
        if len(frames) > 1:
            try:
                return self.decoder.decode_batch(frames)
            except Exception as exc:
                log.debug("a batch of %d failed; decoding each alone", len(frames), exc_info=exc)
        out: list[DecodedFrame | Exception] = []
        for frame in frames:
            try:
                out.append(self.decoder.decode(frame))
            except Exception as exc:
                out.append(exc)
        return out

    def release(self, ref: Reference) -> None:
        """Drop a reference's image (the memory); its report can still be fetched."""
        if ref.image is not None:
            self.reference_bytes -= ref.image.nbytes
            ref.image = None

    def undecodable(self, frame: AssembledFrame, reason: str, exc: Exception) -> FrameReport:
        """Count a frame that could not be decoded; the report says why."""
        self.count_dropped(reason)
        if (frame.stream, frame.frame) in self.references or reason == "decode_error":
            self.warnings.warning(
                reason, "frame %d of stream %d dropped: %s", frame.frame, frame.stream, exc
            )
        return FrameReport(
            stream=frame.stream,
            frame=frame.frame,
            datagrams_sent=frame.count,
            datagrams_received=frame.received,
            error=f"receiver could not decode: {exc}",
        )

    def sampled(self, stream: int) -> bool:
        """Whether this frame of ``stream`` gets every score (``score_every``), not PSNR alone."""
        n = self.scored.get(stream, 0)
        if n or len(self.scored) < MAX_REFERENCES:  # bounded: a forged stream flood stops here
            self.scored[stream] = n + 1
        return n % self.cfg.score_every == 0

    def check_decodable(self, frame: AssembledFrame) -> None:
        """Refuse a descriptor its codec would not have produced, or one too large: forged ones
        must not reach torch (shape errors) or allocate for a huge image."""
        desc = frame.descriptor
        pixels = desc.image_h * desc.image_w
        if pixels > self.cfg.max_pixels:
            raise SemnetError(f"{desc.image_h}x{desc.image_w} image > max_pixels")
        codec = self.codec_for(desc.codec_id)
        expected = codec.latent_shape(desc.image_h, desc.image_w)
        prefix = (  # an A-MIJSCC frame: channels 0..k-1 only
            hasattr(codec, "end_index")
            and 0 < desc.latent[0] <= expected[0]
            and desc.latent[1:] == expected[1:]
        )
        if pixels == 0 or (desc.latent != expected and not prefix):
            raise SemnetError(
                f"latent {desc.latent} is not the codec's {expected} for the image size"
            )

    def finish(self, frame: AssembledFrame, decoded: DecodedFrame) -> FrameReport:
        """Score, save and count one decoded frame (on the worker thread)."""
        ref = self.references.get((frame.stream, frame.frame))
        image = None if ref is None else ref.image
        quality = (
            score(decoded.image, image, self.perceptual, self.sampled(frame.stream))
            if image is not None and image.shape == decoded.image.shape
            else {}
        )
        if quality and decoded.classes:
            model = self.codec_for(frame.descriptor.codec_id)
            clean = reference_class(model, image, self.decoder.device)
            quality["task_agree"] = decoded.classes[0]["label"] == clean
        name = ref.name if ref is not None else f"s{frame.stream}-f{frame.frame}"
        saved = None
        if self.cfg.save_images:
            stem = Path(name).stem
            saved = str(
                self.saved.save(decoded.image, f"{frame.stream}-{frame.frame:06d}-{stem}.png")
            )
        codec = zoo.entry_by_id(frame.descriptor.codec_id).name
        latency = time.monotonic() - frame.first_arrival if frame.datagrams else 0.0
        self.quality.observe(codec, self.fill_name, decoded.loss_ratio, latency, quality)
        self.frames_decoded += 1
        report = FrameReport(
            stream=frame.stream,
            frame=frame.frame,
            name=name,
            codec=codec,
            fill=self.fill_name,
            datagrams_sent=frame.count,
            datagrams_received=decoded.received,
            datagrams_malformed=dict(decoded.dropped),
            loss_ratio=decoded.loss_ratio,
            classes=decoded.classes,
            saved=saved,
            timings=decoded.timings,
            **quality,
        )
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
            ref, dg = self.parse_reference(msgpack.unpackb(await request.read()))
        except (ValueError, KeyError, TypeError, SemnetError, msgpack.UnpackException) as exc:
            raise web.HTTPBadRequest(text=f"bad reference: {exc}") from None
        key, image = (dg.stream, dg.frame), ref.image
        self.reassembler.announce(dg.stream, dg.frame, dg.seq, ref.pace)
        self.stream_slot(dg.stream.to_bytes(2, "big"))  # its datagram count exists from 0
        old = self.references.pop(key, None)
        if old is not None:
            self.release(old)
        self.references[key] = ref
        self.reference_bytes += image.nbytes
        while len(self.references) > MAX_REFERENCES or (
            self.reference_bytes > self.cfg.max_reference_bytes and len(self.references) > 1
        ):
            _, old = self.references.popitem(last=False)
            self.release(old)
            if not old.report.done():
                self.references_evicted += 1
                old.report.cancel()
        delay = self.cfg.deadline + LOST_GRACE + ORPHAN_AFTER
        asyncio.get_running_loop().call_later(delay, self.give_up, key, ref)
        return web.json_response({"ok": True})

    def parse_reference(self, msg: object) -> tuple[Reference, Datagram]:
        """A /reference body -> (Reference, its first datagram parsed); every field is checked
        for type and range before it sizes anything."""
        if not isinstance(msg, dict):
            raise TypeError("body is not a mapping")
        stream, frame = whole(msg, "stream", 2**16 - 1), whole(msg, "frame", 2**32 - 1)
        h, w = whole(msg, "height", self.cfg.max_pixels), whole(msg, "width", self.cfg.max_pixels)
        count = whole(msg, "count", MAX_COUNT)
        if h * w > self.cfg.max_pixels or not (h and w and count):
            raise ValueError(
                f"a {h}x{w} image in {count} datagrams: need 1..{self.cfg.max_pixels} pixels "
                "(max_pixels) and a datagram at least"
            )
        image, name, first = msg["image"], msg["name"], msg["first_datagram"]
        if not isinstance(image, bytes) or len(image) != 3 * h * w:
            raise ValueError(f"image is not {h}x{w}x3 bytes")
        if not isinstance(name, str) or not isinstance(first, bytes):
            raise TypeError("name must be a string and first_datagram bytes")
        dg = parse(first, self.key)
        if (dg.stream, dg.frame, dg.index) != (stream, frame, 0):
            raise ValueError("first_datagram is not datagram 0 of this frame")
        pace = msg.get("pace", 0.0)
        if not isinstance(pace, float) or not 0.0 <= pace < 1.0:
            raise ValueError("pace must be seconds per byte, a float in [0, 1)")
        array = np.frombuffer(image, dtype=np.uint8).reshape(h, w, 3)
        return Reference(name[:200], array, first, count, pace), dg

    def give_up(self, key: tuple[int, int], ref: Reference) -> None:
        """Decode from fill alone an announced frame of which nothing arrived (its datagrams were
        all lost, or its sender died before sending): every announced frame is counted."""
        if ref.queued or self.references.get(key) is not ref or self.reassembler.is_pending(*key):
            return  # decoded or on its way (a pending frame is delivered at its deadline)
        self.frames_lost += 1
        self.schedule(lost_frame(parse(ref.first_datagram, self.key)))

    async def get_report(self, request: web.Request) -> web.Response:
        key = (int(request.match_info["stream"]), int(request.match_info["frame"]))
        ref = self.references.get(key)
        if ref is None:
            raise web.HTTPNotFound(text="no reference for this frame (evicted or never posted)")
        wait = self.cfg.deadline + LOST_GRACE
        try:
            report = await asyncio.wait_for(asyncio.shield(ref.report), wait)
        except TimeoutError:
            self.give_up(key, ref)
            report = await asyncio.shield(ref.report)
        except asyncio.CancelledError:
            raise web.HTTPGone(text="reference evicted before the frame was decoded") from None
        return web.json_response(report.to_json())

    def samples(self):
        c = self.reassembler.counters
        for key, n in sorted(self.stream_received.items()):
            yield Sample(
                "datagrams_received_total",
                "Datagrams that reached the receiver socket, by the stream their header names "
                "(other: not a data datagram, or past the streams counted apart)",
                n,
                (("stream", str(int.from_bytes(key, "big")) if key else "other"),),
            )
        yield Sample(
            "receiver_bytes_received_total",
            "Bytes that reached the receiver socket",
            self.bytes_received,
        )
        yield Sample(
            "receiver_datagrams_accepted_total",
            "Datagrams stored in a frame (received = accepted + duplicate + late + malformed)",
            c.accepted,
        )
        yield from by_reason(
            "receiver_datagrams_malformed_total",
            "Malformed datagrams dropped",
            c.malformed_by_reason,
            MALFORMED_REASONS,
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
            "receiver_decode_batches_total",
            "Synthesis calls; frames_decoded_total over this is the mean batch (max_batch)",
            self.batches,
        )
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
        yield from by_reason(
            "receiver_frames_evicted_total",
            "Frames cut short by a cap (max_frames, max_bytes, max_stream_frames)",
            c.evicted_by_reason,
            EVICTION_CAPS,
        )
        yield from by_reason(
            "receiver_frames_dropped_total",
            "Frames not decoded: nobody announced them, decoder backlog full, descriptor "
            "not decodable, or decoding failed",
            self.frames_dropped,
            DROP_REASONS,
        )
        yield Sample(
            "receiver_reports_sent_total",
            "Receiver reports sent back over the reverse path",
            self.reports_sent,
        )
        yield Sample(
            "receiver_report_errors_total",
            "Receiver reports the socket refused",
            self.report_errors,
        )
        yield Sample(
            "receiver_references_evicted_total",
            "Reference images dropped to respect their caps before their frame was decoded",
            self.references_evicted,
        )
        drops = None if self.sock_inode is None else udp_drops(inode=self.sock_inode)
        if drops is not None:
            yield Sample(
                "receiver_socket_drops_total",
                "Datagrams the kernel dropped on the receiver socket (receive queue full)",
                drops,
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


def whole(msg: dict, key: str, most: int) -> int:
    """``msg[key]`` as an int in 0..most (not a float, not a bool, not huge)."""
    value = msg[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= most:
        raise ValueError(f"{key} must be an integer in 0..{most}")
    return value


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


async def serve(cfg: ReceiverConfig, stop: asyncio.Event) -> None:
    rx = Receiver(cfg)
    sock = udp_socket(parse_address(cfg.listen, "listen"))
    rx.sock_inode = socket_inode(sock)
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), drain(sock, rx.on_datagram))
    app = control_app(rx.key, rx.registry, client_max_size=3 * cfg.max_pixels + 2**20)
    app.add_routes(
        [
            metrics_route(rx.registry),
            web.post("/reference", rx.post_reference),
            web.get("/report/{stream:\\d+}/{frame:\\d+}", rx.get_report),
        ]
    )
    runner = await serve_http(app, *parse_address(cfg.http, "http"))
    loop.run_in_executor(rx.worker, rx.warm)
    worker = asyncio.create_task(rx.decode_forever())
    reporter = asyncio.create_task(rx.report_forever(sock)) if cfg.report_interval else None
    log.info(
        "receiver: datagrams on %s, http on %s, fill %s, images to %s",
        format_address(sock.getsockname()),
        cfg.http,
        cfg.fill,
        rx.saved.folder if cfg.save_images else "(not saved)",
    )
    try:
        await stop.wait()
    finally:
        if reporter is not None:
            reporter.cancel()
        loop.remove_reader(sock.fileno())
        sock.close()
        worker.cancel()
        await runner.cleanup()
        rx.worker.shutdown(wait=True, cancel_futures=True)
        log.info(
            "receiver stopped: %d datagrams, %d frames decoded", rx.received, rx.frames_decoded
        )
