"""Published rate-distortion points to draw beside ours: CompressAI's Kodak results.

These were measured on Kodak (24 images, 768x512), another image set than ours, with the whole
file as the rate (no packet headers): they place our curves in the field, they do not compete
with them point for point. Source: the GitHub repository InterDigitalInc/CompressAI, files
``results/image/kodak/*.json`` at the commit given per entry; points sorted by bpp, bpp rounded
to 4 decimals, PSNR (dB, RGB) to 2, MS-SSIM (RGB, linear) to 4. Nothing is fetched at run time.
"""

from dataclasses import asdict, dataclass

LABEL = "published, Kodak (24 images), another image set"
REPOSITORY = "InterDigitalInc/CompressAI"
DIR = "results/image/kodak/"


@dataclass(frozen=True)
class Published:
    """One published curve: (bpp, PSNR dB, MS-SSIM) points and where they come from."""

    name: str
    description: str
    family: str  # "learned" or "classical"
    file: str  # path in REPOSITORY
    commit: str
    metrics: tuple[str, str, str]  # the JSON keys the three numbers were read from
    points: tuple[tuple[float, float, float], ...]


PUBLISHED: tuple[Published, ...] = (
    Published(
        name="bmshj2018-factorized",
        description="Ballé et al. 2018, factorized prior, MSE-optimised, CompressAI (ans)",
        family="learned",
        file=DIR + "compressai-bmshj2018-factorized_mse_cuda.json",
        commit="3d3c9bbd92989b1cf19e122281161f7aac8ee769",
        metrics=("bpp", "psnr-rgb", "ms-ssim-rgb"),
        points=(
            (0.1226, 26.91, 0.9100),
            (0.1885, 28.22, 0.9360),
            (0.2878, 29.62, 0.9555),
            (0.4404, 31.28, 0.9704),
            (0.6481, 32.96, 0.9806),
            (0.9670, 35.38, 0.9879),
            (1.3512, 37.40, 0.9922),
            (1.8333, 39.62, 0.9951),
        ),
    ),
    Published(
        name="bmshj2018-hyperprior",
        description="Ballé et al. 2018, scale hyperprior, MSE-optimised, CompressAI (ans)",
        family="learned",
        file=DIR + "compressai-bmshj2018-hyperprior_mse_cuda.json",
        commit="3d3c9bbd92989b1cf19e122281161f7aac8ee769",
        metrics=("bpp", "psnr-rgb", "ms-ssim-rgb"),
        points=(
            (0.1313, 27.58, 0.9174),
            (0.2089, 29.20, 0.9421),
            (0.3199, 30.97, 0.9611),
            (0.4784, 32.84, 0.9749),
            (0.6687, 34.53, 0.9836),
            (0.9388, 36.74, 0.9893),
            (1.2592, 38.58, 0.9929),
            (1.6602, 40.56, 0.9955),
        ),
    ),
    Published(
        name="JPEG",
        description="JPEG, Pillow 7.1.2",
        family="classical",
        file=DIR + "jpeg.json",
        commit="3d3c9bbd92989b1cf19e122281161f7aac8ee769",
        metrics=("bpp", "psnr-rgb", "ms-ssim-rgb"),
        points=(
            (0.2212, 23.78, 0.8031),
            (0.3266, 26.58, 0.8899),
            (0.4231, 28.04, 0.9236),
            (0.5084, 29.04, 0.9427),
            (0.5879, 29.78, 0.9533),
            (0.6601, 30.38, 0.9606),
            (0.7289, 30.90, 0.9661),
            (0.7860, 31.31, 0.9697),
            (0.8497, 31.70, 0.9726),
            (0.9060, 32.06, 0.9753),
            (0.9644, 32.40, 0.9773),
            (1.0372, 32.79, 0.9793),
            (1.1274, 33.23, 0.9814),
            (1.2398, 33.79, 0.9837),
            (1.3688, 34.39, 0.9858),
            (1.5718, 35.24, 0.9882),
            (1.8588, 36.33, 0.9906),
            (2.3502, 37.91, 0.9930),
            (3.4013, 40.56, 0.9956),
        ),
    ),
    Published(
        name="WebP",
        description="WebP, Pillow 7.1.2",
        family="classical",
        file=DIR + "webp.json",
        commit="128f00397509b9882aaaeea49f43f1714da083b4",
        metrics=("bpp", "psnr", "ms-ssim"),
        points=(
            (0.2344, 28.33, 0.9257),
            (0.2963, 29.15, 0.9396),
            (0.3529, 29.82, 0.9485),
            (0.4070, 30.41, 0.9550),
            (0.4608, 30.94, 0.9602),
            (0.5127, 31.44, 0.9642),
            (0.5674, 31.94, 0.9676),
            (0.6207, 32.42, 0.9705),
            (0.6747, 32.88, 0.9730),
            (0.7218, 33.24, 0.9751),
            (0.7709, 33.61, 0.9771),
            (0.8237, 33.97, 0.9787),
            (0.8740, 34.33, 0.9803),
            (0.9343, 34.69, 0.9817),
            (0.9984, 35.10, 0.9832),
            (1.2163, 36.37, 0.9869),
            (1.5201, 37.78, 0.9902),
            (2.0104, 39.56, 0.9933),
            (2.9285, 41.76, 0.9960),
        ),
    ),
    Published(
        name="JPEG2000",
        description="JPEG 2000, ffmpeg 3.4.6",
        family="classical",
        file=DIR + "jpeg2000.json",
        commit="128f00397509b9882aaaeea49f43f1714da083b4",
        metrics=("bpp", "psnr", "ms-ssim"),
        points=(
            (0.1258, 26.44, 0.8782),
            (0.1325, 26.59, 0.8818),
            (0.1408, 26.76, 0.8858),
            (0.1489, 26.92, 0.8899),
            (0.1595, 27.12, 0.8954),
            (0.1707, 27.32, 0.8997),
            (0.1844, 27.55, 0.9045),
            (0.1992, 27.80, 0.9094),
            (0.2176, 28.10, 0.9140),
            (0.2394, 28.42, 0.9191),
            (0.2657, 28.77, 0.9244),
            (0.2986, 29.19, 0.9304),
            (0.3418, 29.70, 0.9376),
            (0.3986, 30.30, 0.9446),
            (0.4793, 31.07, 0.9530),
            (0.5988, 32.09, 0.9609),
            (0.7983, 33.49, 0.9707),
            (1.1982, 35.68, 0.9807),
            (2.3973, 39.79, 0.9916),
        ),
    ),
    Published(
        name="BPG",
        description="BPG 0.9.8, 4:4:4, x265, YCbCr",
        family="classical",
        file=DIR + "bpg_444_x265_ycbcr.json",
        commit="128f00397509b9882aaaeea49f43f1714da083b4",
        metrics=("bpp", "psnr", "ms-ssim"),
        points=(
            (0.0678, 26.20, 0.8686),
            (0.1610, 28.68, 0.9242),
            (0.3516, 31.59, 0.9611),
            (0.6847, 34.86, 0.9808),
            (1.1997, 38.26, 0.9905),
            (1.9297, 41.48, 0.9949),
            (3.0579, 44.70, 0.9975),
            (4.7031, 47.63, 0.9988),
        ),
    ),
)


def published() -> list[dict]:
    """Every curve as JSON-native dicts (lists, not tuples: they survive a round trip unchanged),
    each labelled with where and on what it was measured."""
    return [
        {
            **asdict(p),
            "metrics": list(p.metrics),
            "points": [list(point) for point in p.points],
            "label": LABEL,
            "repository": REPOSITORY,
            "image_set": "Kodak",
        }
        for p in PUBLISHED
    ]
