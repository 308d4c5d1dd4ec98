"""Inference engines for a codec's two transforms: eager PyTorch (the reference), OpenVINO (in
float, or in int8 where it keeps quality) or ONNX Runtime on CPU.

Measured side by side on 2 cores, 512x768, the default codec (benchmarks/backends.py): OpenVINO
runs the analysis transform 1.6-2.2x and the synthesis 1.5-2.1x as fast as eager PyTorch,
within 1e-5 of it; ONNX Runtime 2.2x and 0.84x (its transposed convolutions are slow). So
``auto`` is OpenVINO on CPU when it is installed (the ``fast`` extra), else eager; on a GPU it
is eager.

``openvino-int8`` (needs ``nncf`` and the training photos, `make train-data`) runs the heavy
strided (transposed) convolutions in int8, calibrated at load on 16 training-photo crops (NNCF
post-training quantization, about 4 s more at load); GDN, the residual blocks and the first and
last encoder layers stay float. Over OpenVINO float it encodes 1.5-1.7x and decodes 1.6-1.9x
as fast (2.6-3.1x / 2.4-4.0x over eager) and loses 0.085 dB PSNR on the evaluation photos
(0.16 on the worst; every layer in int8: 0.25 dB). Inside the 0.1 dB budget, yet never picked
by ``auto``: the margin is thin, and every daemon would need the training photos and calibrate
at start.

Only the two transforms move: they are converted once per loaded codec (OpenVINO straight
from the torch modules, ONNX Runtime through an in-memory ONNX export; dynamic batch and size,
checked at load on another size than the one traced) and everything else — padding, cropping,
quantizer defaults, entropy tables, fills — stays the torch codec's. Online equals offline bit
for bit for one backend and thread count on one machine (OpenVINO's last bits follow its
thread count; int8 calibrates on the same photos the same way each time); across backends
outputs differ in float rounding only (int8: by its quantization).
"""

import contextlib
import functools
import importlib.util
import io
import logging
import re
import warnings
from collections.abc import Callable

import numpy as np
import torch

from semnet.errors import ConfigError, SemnetError
from semnet.models import BACKENDS, zoo
from semnet.models.codec import Codec

log = logging.getLogger("semnet.backends")
DEFAULT = "auto"  # daemons and offline runs alike, so online equals offline by default
DEFAULT_THREADS = 2  # the daemons' default ``threads``, for the same reason
AUTO_PREFERENCE = ("openvino",)  # what auto picks on CPU, best first, when installed (not int8)
MODULES = {
    "openvino": ("openvino",),
    "openvino-int8": ("openvino", "nncf"),
    "onnxruntime": ("onnxruntime", "onnx"),
}
TOLERANCE = {"openvino-int8": 0.05}  # of check_against_eager: int8 errs by ~2% on its noise
# The layers openvino-int8 runs in int8 (OpenVINO names: module path, then the op); the rest
# stays float. Chosen on the default codec by measuring sets of layers (PSNR on the evaluation
# photos): these hold 2/3 of the multiply-adds and lose 0.085 dB; adding the residual blocks
# or the first and last encoder convolutions costs 0.02-0.04 dB more, all layers 0.25 dB.
INT8_LAYERS = re.compile(r"\.(encoder\.[24]|decoder\.[0246])/")

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
        check_against_eager(codec, exported, TOLERANCE.get(name, 1e-3))
    except Exception as exc:  # an operator the exporter or the engine lacks, a baked shape
        if backend == "auto":
            log.warning("%s: %s failed; running eager", codec.zoo_name, name, exc_info=exc)
            return codec
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"backend: {name} cannot run {codec.zoo_name}: {why}") from None
    return exported


def check_against_eager(codec: Codec, exported: ExportedCodec, tolerance: float = 1e-3) -> None:
    """Run both on an image of another size than the export's: a graph that baked a shape in
    (a window partition's reshape) fails or differs here, at load, not on a user's frame.
    ``tolerance`` is relative to the largest eager value (latents span tens, images one)."""
    x = torch.rand(1, 3, 3 * codec.stride + 1, 5 * codec.stride - 3, generator=torch.Generator())
    with torch.no_grad():
        y = codec.encode(x)
        pairs = (
            (exported.encode(x), y),
            (exported.decode(y, *x.shape[-2:]), codec.decode(y, *x.shape[-2:])),
        )
    difference = max(float((a - b).abs().max() / b.abs().max().clamp(min=1.0)) for a, b in pairs)
    if difference > tolerance:
        raise ValueError(f"differs from eager by {difference:.2g} (relative)")


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


def _to_openvino(module: torch.nn.Module, example: torch.Tensor):
    """``module`` as an OpenVINO model, dynamic in batch and size."""
    import openvino

    shape = openvino.PartialShape([-1, example.shape[1], -1, -1])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes: the load-time check covers them
        return openvino.convert_model(module, example_input=example, input=[shape])


def _compile(models: list, threads: int) -> tuple[Engine, Engine]:
    import openvino

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}  # not bf16
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    core, engines = openvino.Core(), []
    for model in models:
        request = core.compile_model(model, "CPU", config).create_infer_request()
        engines.append(lambda array, r=request: r.infer([array])[0].copy())  # buffer reused
    return engines[0], engines[1]


def _openvino(codec: Codec, threads: int) -> tuple[Engine, Engine]:
    return _compile([_to_openvino(*pair) for pair in transforms(codec)], threads)


def calibration_images(count: int = 16, height: int = 256, width: int = 384) -> list[np.ndarray]:
    """Every k-th photo of the training manifest (the same ones each time), scaled to cover
    ``height`` x ``width`` and centre-cropped, as 1 x 3 x H x W floats in [0, 1]: what int8
    calibrates on. Training photos only: the evaluation photos measure what int8 costs and must
    not shape it. 32 whole 512x768 frames calibrated no better than these 16 crops (measured)."""
    from PIL import Image, ImageOps

    from semnet.images import load_image
    from semnet.models.train import training_files

    try:
        files = training_files()
    except SemnetError:
        raise SemnetError("int8 calibrates on the training photos: `make train-data`") from None
    images = []
    for path in files[:: max(1, len(files) // count)][:count]:
        photo = Image.fromarray(load_image(path))
        crop = np.asarray(ImageOps.fit(photo, (width, height), Image.Resampling.LANCZOS))
        images.append(np.ascontiguousarray(crop.transpose(2, 0, 1)[None], np.float32) / 255)
    return images


def _reader(output):
    """The one node that reads ``output``; None when there are several."""
    readers = [i.get_node() for i in output.get_target_inputs()]
    return readers[0] if len(readers) == 1 else None


def _fold_input_scale(model) -> None:
    """Fold a per-channel scale of the input into the convolution that reads it (the rd codecs
    divide the latent by their gains first): behind such a Divide, OpenVINO's int8 transposed
    convolution errs ten times more than int8 needs to (0.3 dB lost on the default codec)."""
    from openvino import opset13

    (parameter,) = model.get_parameters()
    scale = _reader(parameter.output(0))
    conv = scale and _reader(scale.output(0))
    axis = conv and {"Convolution": 1, "ConvolutionBackpropData": 0}.get(conv.get_type_name())
    if axis is None or scale.get_type_name() not in ("Divide", "Multiply"):
        return
    factor, weights = scale.input_value(1).get_node(), conv.input_value(1).get_node()
    if {factor.get_type_name(), weights.get_type_name()} != {"Constant"}:
        return
    f = factor.get_data().reshape([-1 if d == axis else 1 for d in range(4)])
    folded = weights.get_data() / f if scale.get_type_name() == "Divide" else weights.get_data() * f
    conv.input(1).replace_source_output(opset13.constant(folded.astype(np.float32)).output(0))
    conv.input(0).replace_source_output(parameter.output(0))
    model.validate_nodes_and_infer_types()


def _quantize(model, inputs: list[np.ndarray]):
    """``model`` with int8 in the layers :data:`INT8_LAYERS` names, float elsewhere. Activations
    symmetric (the PERFORMANCE preset): with a zero point, OpenVINO's CPU plugin runs transposed
    convolutions in float behind fake quantizers, as slow as float and less exact."""
    import nncf

    nncf.set_log_level(logging.WARNING)  # its INFO lists every op kept float
    names = [op.get_friendly_name() for op in model.get_ordered_ops()]
    floats = [n for n in names if not INT8_LAYERS.search(n)]
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bars
        return nncf.quantize(
            model,
            nncf.Dataset(inputs),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(inputs),
            ignored_scope=nncf.IgnoredScope(names=floats, validate=False),
        )


def _openvino_int8(codec: Codec, threads: int) -> tuple[Engine, Engine]:
    """OpenVINO with post-training static int8 (NNCF), calibrated on training photos: the
    analysis transform on the crops, the synthesis on their latents (unquantized: what the
    decoder was trained to invert)."""
    images = calibration_images()
    with torch.no_grad():
        latents = [np.ascontiguousarray(codec.encode(torch.from_numpy(x)).numpy()) for x in images]
    analysis, synthesis = (_to_openvino(*pair) for pair in transforms(codec))
    _fold_input_scale(synthesis)
    return _compile([_quantize(analysis, images), _quantize(synthesis, latents)], threads)


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
    "openvino-int8": _openvino_int8,
    "onnxruntime": _onnxruntime,
}
