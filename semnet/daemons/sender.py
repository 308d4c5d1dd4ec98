"""Sender daemon: load the codec once, take images from `semnet send`, encode, pace datagrams.

Per image: encode and packetize on a worker thread; post the reference image (and one datagram,
for its descriptor) to the receiver over HTTP, bypassing the proxy; send the datagrams over UDP
at ``rate_mbps``; then fetch the receiver's report and return it to the client.

The receiver's reports (semnet.core.feedback) come back over the proxy's reverse path onto the
datagram socket; the latest per stream is kept, exported, and returned with each /send, unless
it is older than ``feedback_timeout`` (stale: then there is none).

With a key, datagrams and reports carry tags and every HTTP request (ours to the receiver, the
client's /send to us) is signed. Frame ids and sequence numbers start from the wall clock, so a
restarted sender never reuses the numbers of its last run (see :func:`boot_numbers`).
"""

import asyncio
import io
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import aiohttp
import msgpack
import numpy as np
import torch
from aiohttp import web
from PIL import Image, UnidentifiedImageError

from semnet.core.auth import HEADER, sign_request
from semnet.core.feedback import REFUSALS, ReceiverReport, ReportBook
from semnet.core.partition import parse_spec
from semnet.core.wire import FrameDescriptor
from semnet.daemons.config import SenderConfig
from semnet.daemons.metrics import LiveCounters, Sample, by_reason
from semnet.daemons.net import drain, parse_address, udp_socket
from semnet.daemons.service import control_app, daemon_registry, metrics_route, serve_http
from semnet.errors import ConfigError, ModelError, SemnetError
from semnet.images import to_rgb
from semnet.models import backends, classifier, zoo, zoopath
from semnet.pipeline.frames import U32, FrameEncoder, PathSettings, SentFrame
from semnet.pipeline.report import FrameReport
from semnet.pipeline.tensors import pick_device

log = logging.getLogger("semnet.sender")
# The latest receiver report as gauges: (metric name suffix, help, ReceiverReport attribute)
REPORT_GAUGES = (
    ("fraction_lost", "Fraction lost in the latest receiver report's interval", "fraction_lost"),
    ("cumulative_lost", "Datagrams lost since the stream began, as reported", "cumulative_lost"),
    ("jitter_seconds", "Interarrival jitter (RFC 3550) in the latest receiver report", "jitter"),
    ("mean_burst_datagrams", "Mean loss run in the latest report's interval", "mean_burst"),
)


def bytes_left_out(desc: FrameDescriptor, codec) -> int:
    """Payload bytes a frame sent as a prefix of k channels saved against all of them."""
    c, h, w = desc.latent
    return (codec.latent_channels - c) * h * w * desc.quant.bits // 8


def boot_numbers(now_ns: int) -> tuple[int, int]:
    """First frame id and first sequence number of a sender process: the wall clock in ms and
    µs (mod 2**32). Frames go out far slower than 1000/s and datagrams than 10**6/s, so a
    restart starts ahead of everything its last run used: its frames are not taken for late
    ones of that run, nor its datagrams for duplicates or replays. Past the wraps (49.7 days,
    71.6 min) the receiver's resync on the signed /reference takes over."""
    return (now_ns // 10**6) % U32, (now_ns // 10**3) % U32


class Sender:
    def __init__(self, cfg: SenderConfig) -> None:
        self.cfg = cfg
        zoopath.use(zoopath.as_list(cfg.zoo))  # its zoos first, for every codec lookup
        if cfg.importance and not classifier.available():
            raise ConfigError("importance: the CAM needs the classifier (make metrics-extra)")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.key = cfg.load_auth_key()
        device = self.device = pick_device(cfg.device)
        entry = zoo.entry(zoo.rate_point(cfg.codec, cfg.quality, cfg.bpp))
        self.codec_name, self.configured = entry.name, entry
        path = PathSettings(
            parse_spec(cfg.partition),
            cfg.interleave,
            cfg.datagram_size,
            cfg.quant,
            cfg.bits,
            cfg.importance,
            cfg.planes,
            cfg.payload_check,
        )
        first_frame, first_seq = boot_numbers(time.time_ns())
        self.encoder = FrameEncoder(
            self.load(entry.name),
            entry.codec_id,
            path,
            cfg.stream,
            cfg.seed,
            device,
            first_frame if cfg.first_frame is None else cfg.first_frame,
            first_seq,
            self.key,
        )
        data_to = parse_address(cfg.data_to, "data_to")
        self.sock = udp_socket(family=socket.AF_INET6 if ":" in data_to[0] else socket.AF_INET)
        try:
            self.sock.connect(data_to)
        except OSError as exc:  # an unknown host, an unreachable network
            self.sock.close()
            why = exc.strerror or str(exc)
            raise ConfigError(f"data_to: cannot send to {cfg.data_to} ({why})") from None
        self.receiver = f"http://{cfg.receiver_http}"
        self.book = ReportBook([cfg.stream], self.key, cfg.feedback_timeout)
        self.active: int | None = None  # latent channels the last frame sent (its end index)
        self.latent_bytes_saved = 0  # payload of the channels an adaptive codec left out
        # Frames overlap in three stages: frame n+1 is encoded while frame n is paced onto the
        # wire while frame n-1's report is awaited. Both locks are FIFO and a frame queues for
        # the wire before it lets the next one encode, so frames reach the wire in their order.
        self.encoding = asyncio.Lock()
        self.wire = asyncio.Lock()  # one frame on the wire at a time: pacing stays honest
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="encode")
        self.sent = self.bytes_sent = self.frames = self.send_errors = self.report_errors = 0
        self.registry = daemon_registry("sender")
        self.registry.register(LiveCounters(self.samples))
        self.session: aiohttp.ClientSession | None = None

    def load(self, name: str):
        """A zoo codec on this sender's device and backend (loaded and compiled once)."""
        cfg = self.cfg
        return backends.load(name, cfg.backend, str(self.device), cfg.threads, cfg.half)

    async def post_send(self, request: web.Request) -> web.Response:
        """POST /send, body msgpack {"name": str, "image": encoded image file bytes}, and
        optionally "quality": int or "bpp": float to pick another rate point of the codec's
        family for this frame."""
        try:
            msg = msgpack.unpackb(await request.read())
            name = str(msg["name"])[:200]
            codec = self.pick_codec(msg.get("quality"), msg.get("bpp"))
            with Image.open(io.BytesIO(msg["image"])) as im:
                if im.width * im.height > self.cfg.max_pixels:  # before decoding it
                    raise ValueError(
                        f"a {im.width}x{im.height} image has more pixels than the sender's "
                        f"max_pixels ({self.cfg.max_pixels}, a sender config key)"
                    )
                image = to_rgb(im)
        except UnidentifiedImageError:
            raise web.HTTPBadRequest(
                text="bad send request: not an image file Pillow can read"
            ) from None
        except (
            KeyError,
            TypeError,
            ValueError,
            msgpack.UnpackException,
            Image.DecompressionBombError,
            OSError,
        ) as exc:
            raise web.HTTPBadRequest(text=f"bad send request: {exc}") from None
        async with self.encoding:
            if codec.name != self.codec_name:
                model = self.load(codec.name)
                try:
                    self.encoder.switch(model, codec.codec_id)
                except ConfigError as exc:
                    raise web.HTTPBadRequest(text=f"bad send request: {exc}") from None
                self.codec_name = codec.name
            loop = asyncio.get_running_loop()
            k = self.end_index(self.encoder.codec)
            sent = await loop.run_in_executor(self.worker, self.encoder.encode, image, k)
            self.active = sent.descriptor.latent[0]
            self.latent_bytes_saved += bytes_left_out(sent.descriptor, self.encoder.codec)
            await self.wire.acquire()
        try:
            reference_ok, send_time = await self.transmit(name, image, sent)
        finally:
            self.wire.release()
        report = await self.report(name, image, sent, reference_ok, send_time, k)
        return web.json_response(report.to_json())

    def end_index(self, codec) -> int | None:
        """The active prefix of the next frame for an A-MIJSCC codec (None: every channel),
        chosen from the stream's receiver reports: the loop closed over the real reverse path.
        The loss is taken over the last few dozen datagrams the fresh reports cover
        (ReportBook.loss), the burst from the latest. With no fresh report (none yet, or all
        lost for feedback_timeout) every channel goes, the fixed-length default."""
        if not hasattr(codec, "end_index"):
            return None
        loss = self.book.loss(self.cfg.stream, time.monotonic())
        if loss is None:
            return None
        burst = self.book.last(self.cfg.stream).mean_burst
        return codec.end_index((loss, max(1.0, burst)))

    def pick_codec(self, quality: object, bpp: object) -> zoo.ZooEntry:
        """The zoo entry a /send asks for: the configured codec, or another rate point."""
        if quality is None and bpp is None:
            return self.configured
        if quality is not None and (not isinstance(quality, int) or isinstance(quality, bool)):
            raise ValueError(f"quality {quality!r} is not an integer")
        if bpp is not None and not (isinstance(bpp, int | float) and bpp > 0):
            raise ValueError(f"bpp {bpp!r} is not a positive number")
        try:
            return zoo.entry(zoo.rate_point(self.configured.name, quality, bpp))
        except ModelError as exc:
            raise ValueError(str(exc)) from None

    async def transmit(self, name: str, image: np.ndarray, sent: SentFrame) -> tuple[bool, float]:
        """Announce the frame on the side channel, then pace its datagrams; (whether the
        receiver took the reference, seconds on the wire)."""
        ref = {
            "stream": self.cfg.stream,
            "frame": sent.frame,
            "name": name,
            "height": image.shape[0],
            "width": image.shape[1],
            "image": image.tobytes(),
            "first_datagram": sent.datagrams[0],
            "count": len(sent.datagrams),
            "pace": 8 / (self.cfg.rate_mbps * 1e6),  # seconds per byte: the reports' jitter
        }
        reference_ok = await self.post_reference(msgpack.packb(ref))
        last_seq = (sent.first_seq + len(sent.datagrams) - 1) % U32
        self.book.sent(self.cfg.stream, sent.first_seq, last_seq)
        t0 = time.perf_counter()
        await self.pace(sent.datagrams)
        self.frames += 1
        return reference_ok, time.perf_counter() - t0

    async def report(
        self,
        name: str,
        image: np.ndarray,
        sent: SentFrame,
        reference_ok: bool,
        send_time: float,
        end_index: int | None,
    ) -> FrameReport:
        """What the client gets: the receiver's report of the frame with the sender's side on
        top."""
        h, w = image.shape[:2]
        ours = {
            "stream": self.cfg.stream,
            "frame": sent.frame,
            "first_seq": sent.first_seq,
            "name": name,
            "codec": zoo.entry_by_id(sent.descriptor.codec_id).name,
            "datagrams_sent": len(sent.datagrams),
            "bytes_sent": sent.bytes_sent,
            "bpp": 8 * sent.bytes_sent / (h * w),
            "end_index": end_index,
        }
        log.info(
            "frame %d (%s): %d datagrams, %d bytes, %.3f bpp",
            sent.frame,
            name,
            len(sent.datagrams),
            sent.bytes_sent,
            ours["bpp"],
        )
        if reference_ok:
            theirs = await self.fetch_report(sent.frame)
        else:
            theirs = FrameReport(
                frame=sent.frame,
                datagrams_sent=len(sent.datagrams),
                error="receiver did not take the reference, so it will not report",
            )
        report = replace(
            theirs,
            **ours,
            timings={**sent.timings, **theirs.timings, "send": send_time},
            receiver_report=self.receiver_report(time.monotonic()),
        )
        return report

    def on_report(self, data: bytes, _: tuple) -> None:
        """A datagram on the reverse path: kept when it is a fresh, authentic, possible report,
        else counted under its reason."""
        self.book.receive(data, time.monotonic())

    def receiver_report(self, now: float) -> dict | None:
        """The latest report of our stream as /send returns it; None if none or stale."""
        report = self.book.latest(self.cfg.stream, now)
        if report is None:
            return None
        return {**report_fields(report), "age_s": self.book.age(self.cfg.stream, now)}

    async def pace(self, datagrams: list[bytes]) -> None:
        """Send at rate_mbps: sleep whenever the bytes sent run ahead of the clock."""
        rate = self.cfg.rate_mbps * 1e6 / 8
        start, sent_bytes = time.perf_counter(), 0
        for data in datagrams:
            ahead = sent_bytes / rate - (time.perf_counter() - start)
            if ahead > 0.001:
                await asyncio.sleep(ahead)
            try:
                self.sock.send(data)
                self.sent += 1
                self.bytes_sent += len(data)
            except OSError as exc:  # e.g. nobody listening yet: counted, the frame goes on
                self.send_errors += 1
                log.warning("send failed: %s", exc)
            sent_bytes += len(data)

    def signed(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        """Headers for one request to the receiver: a signature when a key is set."""
        if self.key is None:
            return {}
        return {HEADER: sign_request(self.key, method, path, body, time.time())}

    async def post_reference(self, body: bytes) -> bool:
        headers = self.signed("POST", "/reference", body)
        try:
            async with self.session.post(
                f"{self.receiver}/reference", data=body, headers=headers
            ) as r:
                r.raise_for_status()
                return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.report_errors += 1
            log.warning("receiver %s unreachable for the reference: %s", self.receiver, exc)
            return False

    async def fetch_report(self, frame: int) -> FrameReport:
        path = f"/report/{self.cfg.stream}/{frame}"
        try:
            timeout = aiohttp.ClientTimeout(total=self.cfg.report_timeout)
            headers = self.signed("GET", path)
            async with self.session.get(
                self.receiver + path, timeout=timeout, headers=headers
            ) as r:
                r.raise_for_status()
                return FrameReport.from_json(await r.json())
        except (aiohttp.ClientError, TimeoutError, ValueError, SemnetError) as exc:
            self.report_errors += 1
            log.warning("no report for frame %d: %s", frame, exc)
            error = f"receiver did not report: {exc or type(exc).__name__}"
            return FrameReport(frame=frame, datagrams_sent=0, error=error)

    def samples(self):
        stream = (("stream", str(self.cfg.stream)),)
        yield Sample("datagrams_sent_total", "Datagrams sent", self.sent, stream)
        yield Sample("sender_bytes_sent_total", "Datagram bytes sent", self.bytes_sent, stream)
        yield Sample("sender_frames_sent_total", "Frames sent", self.frames, stream)
        yield Sample("sender_send_errors_total", "Datagrams the socket refused", self.send_errors)
        yield Sample(
            "sender_report_errors_total", "Frames the receiver did not report", self.report_errors
        )
        yield Sample(
            "sender_latent_bytes_saved_total",
            "Payload bytes of the latent channels an adaptive (A-MIJSCC) codec left out",
            self.latent_bytes_saved,
            stream,
        )
        if self.active is not None:
            yield Sample(
                "sender_active_channels",
                "Latent channels the last frame sent: all of a fixed-length codec's, an A-MIJSCC "
                "codec's end index",
                self.active,
                stream,
                kind="gauge",
            )
        yield from self.feedback_samples(time.monotonic())

    def feedback_samples(self, now: float):
        book = self.book
        yield Sample(
            "sender_feedback_reports_total", "Receiver reports kept (reverse path)", book.accepted
        )
        yield from by_reason(
            "sender_feedback_refused_total",
            "Datagrams on the reverse path refused as receiver reports, by reason",
            book.refused,
            REFUSALS,
        )
        for stream in book.streams:
            label = (("stream", str(stream)),)
            yield Sample(
                "sender_feedback_stale",
                "1 when the stream has no receiver report younger than feedback_timeout",
                float(book.latest(stream, now) is None),
                label,
                kind="gauge",
            )
            report = book.last(stream)
            if report is None:
                continue
            yield Sample(
                "sender_feedback_age_seconds",
                "Seconds since the latest receiver report arrived",
                book.age(stream, now),
                label,
                kind="gauge",
            )
            for name, doc, attr in REPORT_GAUGES:
                value = getattr(report, attr)
                yield Sample(f"sender_feedback_{name}", doc, value, label, kind="gauge")


def report_fields(report: ReceiverReport) -> dict:
    """A receiver report as JSON for `semnet send --json`."""
    return {
        "stream": report.stream,
        "number": report.number,
        "highest_seq": report.highest,
        "fraction_lost": report.fraction_lost,
        "cumulative_lost": report.cumulative_lost,
        "jitter_s": report.jitter,
        "mean_burst": report.mean_burst,
        "frames": report.frames,
    }


async def serve(cfg: SenderConfig, stop: asyncio.Event) -> None:
    tx = Sender(cfg)
    # A fresh connection per request: a restarted receiver never meets a stale pooled one.
    tx.session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30), connector=aiohttp.TCPConnector(force_close=True)
    )
    # An image file of max_pixels: 8 bytes a pixel covers 16-bit RGBA PNG, stored uncompressed.
    app = control_app(tx.key, tx.registry, client_max_size=8 * cfg.max_pixels + 2**20)
    app.add_routes([metrics_route(tx.registry), web.post("/send", tx.post_send)])
    runner = await serve_http(app, *parse_address(cfg.http, "http"))
    loop = asyncio.get_running_loop()
    loop.add_reader(tx.sock.fileno(), drain(tx.sock, tx.on_report))
    log.info(
        "sender: codec %s, http on %s, datagrams to %s, side channel %s",
        tx.codec_name,
        cfg.http,
        cfg.data_to,
        cfg.receiver_http,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await tx.session.close()
        loop.remove_reader(tx.sock.fileno())
        tx.sock.close()
        tx.worker.shutdown(wait=True, cancel_futures=True)
        log.info("sender stopped: %d frames, %d datagrams", tx.frames, tx.sent)
