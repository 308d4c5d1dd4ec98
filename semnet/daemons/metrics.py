"""Prometheus metrics shared by the daemons.

Hot-path counts are plain ints owned by the core objects (impairment, reassembler, sender) and
read at scrape time by ``LiveCounters`` — no lock per datagram, one source of truth. Per-frame
quality goes into histograms with buckets chosen for PSNR and SSIM, labelled by a fixed set of
realised-loss buckets so a dashboard can draw quality versus loss with a bounded label set.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Upper edges of the realised-loss buckets; a frame with no loss is "0".
LOSS_EDGES = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0)
_LOWER = (0.0, *LOSS_EDGES[:-1])
LOSS_BUCKETS = ("0", *(f"{lo:g}-{hi:g}" for lo, hi in zip(_LOWER, LOSS_EDGES, strict=True)))
PSNR_BUCKETS = (10, 14, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 40, 50)
SSIM_BUCKETS = (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0)
LPIPS_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
RATIO_BUCKETS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def loss_bucket(ratio: float) -> str:
    """The fixed label of a realised loss ratio in [0, 1]."""
    if ratio <= 0.0:
        return "0"
    for i, edge in enumerate(LOSS_EDGES):
        if ratio <= edge:
            return LOSS_BUCKETS[i + 1]
    return LOSS_BUCKETS[-1]


@dataclass(frozen=True)
class Sample:
    name: str  # without the semnet_ prefix
    doc: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    kind: str = "counter"  # or "gauge"


def by_reason(
    name: str, doc: str, counts: dict[str, int], reasons: tuple[str, ...] = ()
) -> Iterator[Sample]:
    """A counter per reason label: every known reason from zero (a dashboard's rate() needs the
    series before the first event), then any other one met."""
    for reason in [*reasons, *sorted(set(counts) - set(reasons))]:
        yield Sample(name, doc, counts.get(reason, 0), (("reason", reason),))


class LiveCounters(Collector):
    """Collects samples from a callable at scrape time, grouping them into metric families."""

    def __init__(self, read: Callable[[], Iterable[Sample]]) -> None:
        self.read = read

    def collect(self):
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for s in self.read():
            family = families.get(s.name)
            if family is None:
                cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
                family = cls(f"semnet_{s.name}", s.doc, labels=[k for k, _ in s.labels])
                families[s.name] = family
            family.add_metric([v for _, v in s.labels], s.value)
        yield from families.values()


class FrameQuality:
    """Receiver histograms: per-frame loss ratio, PSNR, SSIM, LPIPS and latency; semantic and
    task agreement as counters split by ``agree`` (accuracy = true / all)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("codec", "fill", "loss_bucket")
        self.loss = Histogram(
            "semnet_frame_loss_ratio",
            "Realised datagram loss ratio per frame",
            ("codec", "fill"),
            buckets=RATIO_BUCKETS,
            registry=registry,
        )
        self.psnr = Histogram(
            "semnet_frame_psnr_db",
            "PSNR of decoded frames (dB)",
            labels,
            buckets=PSNR_BUCKETS,
            registry=registry,
        )
        self.ssim = Histogram(
            "semnet_frame_ssim",
            "SSIM of decoded frames",
            labels,
            buckets=SSIM_BUCKETS,
            registry=registry,
        )
        self.lpips = Histogram(
            "semnet_frame_lpips",
            "LPIPS-AlexNet of decoded frames (lower is closer)",
            labels,
            buckets=LPIPS_BUCKETS,
            registry=registry,
        )
        self.semantic = Counter(
            "semnet_frame_semantic",
            "Decoded frames whose classifier top-1 label agrees (or not) with the original's",
            (*labels, "agree"),
            registry=registry,
        )
        self.task = Counter(
            "semnet_frame_task",
            "Frames of a multi-task codec whose class read from the received latent agrees (or "
            "not) with the one read from the reference's whole latent",
            (*labels, "agree"),
            registry=registry,
        )
        self.latency = Histogram(
            "semnet_frame_latency_seconds",
            "First datagram to decoded image",
            ("codec", "fill"),
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )

    def observe(
        self,
        codec: str,
        fill: str,
        loss: float,
        latency: float,
        quality: dict,
    ) -> None:
        """``quality`` holds what was scored: psnr_db, perhaps ssim, lpips, semantic_agree."""
        self.loss.labels(codec, fill).observe(loss)
        self.latency.labels(codec, fill).observe(latency)
        bucket = loss_bucket(loss)
        if quality.get("psnr_db") is not None:
            self.psnr.labels(codec, fill, bucket).observe(quality["psnr_db"])
        if quality.get("ssim") is not None:  # on a sample with score_every
            self.ssim.labels(codec, fill, bucket).observe(quality["ssim"])
        if quality.get("lpips") is not None:
            self.lpips.labels(codec, fill, bucket).observe(quality["lpips"])
        for key, counter in (("semantic_agree", self.semantic), ("task_agree", self.task)):
            if quality.get(key) is not None:
                counter.labels(codec, fill, bucket, "true" if quality[key] else "false").inc()
