"""Inference engines for a codec's two transforms: eager PyTorch (the reference), OpenVINO or
ONNX Runtime on CPU.

Measured side by side on 2 cores, 512x768, the default codec (benchmarks/backends.py): OpenVINO
runs the analysis transform 2.2x and the synthesis 2.0x as fast as eager PyTorch, within 1e-5 of
it; ONNX Runtime 2.2x and 0.84x (its transposed convolutions are slow). So ``auto`` is OpenVINO
on CPU when it is installed (the ``fast`` extra), else eager; on a GPU it is eager.

Only the two transforms move: they are converted once per loaded codec (OpenVINO straight
from the torch modules, ONNX Runtime through an in-memory ONNX export; dynamic batch and size,
checked at load on another size than the one traced) and everything else — padding, cropping,
quantizer defaults, entropy tables, fills — stays the torch codec's. Online equals offline bit
for bit for one backend and thread count on one machine (OpenVINO's last bits follow its
thread count); across backends outputs differ in float rounding only.
"""

import functools
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch

from semnet.errors import ConfigError
from semnet.models import BACKENDS, zoo
from semnet.models.codec import Codec

log = logging.getLogger("semnet.backends")
DEFAULT = "auto"  # daemons and offline runs alike, so online equals offline by default
DEFAULT_THREADS = 2  # the daemons' default ``threads``, for the same reason
AUTO_PREFERENCE = ("openvino",)  # what auto picks on CPU, best first, when installed
MODULES = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime", "onnx")}

Engine = Callable[[np.ndarray], np.ndarray]


def installed(backend: str) -> bool:
    return backend == "eager" or all(importlib.util.find_spec(m) for m in MODULES[backend])


def resolve(backend: str, device: torch.device) -> str:
    """The engine a config's ``backend`` means here; ConfigError when it cannot run."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device.type != "cpu":
            return "eager"
        return next((b for b in AUTO_PREFERENCE if installed(b)), "eager")
    if backend != "eager" and device.type != "cpu":
        raise ConfigError(f"backend: {backend} runs on the CPU, but device is {device}")
    if not installed(backend):
        packages = " ".join(MODULES[backend])
        raise ConfigError(f"backend: {backend} is not installed (pip install {packages})")
    return backend


class ExportedCodec:
    """A codec whose ``encode`` and ``decode`` run in another engine; every other attribute is
    the wrapped torch codec's."""

    def __init__(self, codec: Codec, backend: str, analysis: Engine, synthesis: Engine) -> None:
        self.codec, self.backend = codec, backend
        self.analysis, self.synthesis = analysis, synthesis

    def __getattr__(self, name: str):
        return getattr(self.codec, name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        padded = self.codec.pad(x).float().contiguous().numpy()
        return torch.from_numpy(np.ascontiguousarray(self.analysis(padded)))

    def decode(self, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.synthesis(y.float().contiguous().numpy())))
        return x[..., :height, :width].clamp(0.0, 1.0)


class HalfPrecision:
    """A codec whose two transforms run under CUDA autocast to float16 (tensor cores, half the
    memory traffic); latents and images stay float32 outside them."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def __getattr__(self, name: str):
        return getattr(self.codec, name)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", torch.float16):
            return self.codec.encode(x).float()

    def decode(self, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
        with torch.autocast("cuda", torch.float16):
            return self.codec.decode(y, height, width).float()


@functools.lru_cache(maxsize=16)
def load(
    name: str,
    backend: str = DEFAULT,
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    half: bool = False,
):
    """A zoo codec ready to run: loaded once per process, on ``device``, its transforms in
    ``backend`` with ``threads`` (what the daemons and the offline chain both use: the same
    three give the same bits; OpenVINO's last bits can change with its thread count), in
    float16 with ``half`` where the device is a GPU."""
    where = torch.device(device)
    codec = accelerate(zoo.load(name).to(where), backend, where, threads)
    if half and where.type == "cuda":
        return HalfPrecision(codec)
    if half:
        log.info("half: off for %s, float16 runs on CUDA only (device %s)", name, where)
    return codec


def accelerate(codec: Codec, backend: str, device: torch.device, threads: int = 0):
    """``codec`` itself for eager, else the codec with its transforms compiled for ``backend``
    (``threads`` 0: the engine's default). ``auto`` falls back to eager, logged, when the
    export fails; a named backend that fails is a ConfigError."""
    name = resolve(backend, device)
    if name == "eager":
        return codec
    try:
        exported = ExportedCodec(codec, name, *COMPILERS[name](codec, threads))
        check_against_eager(codec, exported)
    except Exception as exc:  # an operator the exporter or the engine lacks, a baked shape
        if backend == "auto":
            log.warning("%s: %s failed; running eager", codec.zoo_name, name, exc_info=exc)
            return codec
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"backend: {name} cannot run {codec.zoo_name}: {why}") from None
    return exported


def check_against_eager(codec: Codec, exported: ExportedCodec, tolerance: float = 1e-3) -> None:
    """Run both on an image of another size than the export's: a graph that baked a shape in
    (a window partition's reshape) fails or differs here, at load, not on a user's frame."""
    x = torch.rand(1, 3, 3 * codec.stride + 1, 5 * codec.stride - 3, generator=torch.Generator())
    with torch.no_grad():
        y = codec.encode(x)
        differences = (
            (exported.encode(x) - y).abs().max(),
            (exported.decode(y, *x.shape[-2:]) - codec.decode(y, *x.shape[-2:])).abs().max(),
        )
    if max(differences) > tolerance:
        raise ValueError(f"differs from eager by {float(max(differences)):.2g}")


class _Analysis(torch.nn.Module):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(x)  # x arrives padded: the traced pad is a no-op


class _Synthesis(torch.nn.Module):
    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.codec.synthesize(y)


def transforms(codec: Codec) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """The two transforms as modules, each with an example input to trace."""
    x = torch.rand(1, 3, 4 * codec.stride, 4 * codec.stride)
    with torch.no_grad():
        return [(_Analysis(codec).eval(), x), (_Synthesis(codec).eval(), codec.encode(x))]


def _openvino(codec: Codec, threads: int) -> tuple[Engine, Engine]:
    import openvino

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # not bf16
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    core, engines = openvino.Core(), []
    for module, example in transforms(codec):
        shape = openvino.PartialShape([-1, example.shape[1], -1, -1])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes: the load-time check covers them
            model = openvino.convert_model(module, example_input=example, input=[shape])
        request = core.compile_model(model, "CPU", config).create_infer_request()
        engines.append(lambda array, r=request: r.infer([array])[0].copy())  # buffer reused
    return engines[0], engines[1]


def _onnxruntime(codec: Codec, threads: int) -> tuple[Engine, Engine]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    engines = []
    for module, example in transforms(codec):
        buffer, dynamic = io.BytesIO(), {0: "n", 2: "h", 3: "w"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": dynamic, "output": dynamic},
                opset_version=17,
                dynamo=False,
            )
        session = onnxruntime.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        engines.append(lambda array, s=session: s.run(None, {"input": array})[0])
    return engines[0], engines[1]


COMPILERS: dict[str, Callable[[Codec, int], tuple[Engine, Engine]]] = {
    "openvino": _openvino,
    "onnxruntime": _onnxruntime,
}
