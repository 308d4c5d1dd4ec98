"""Models layer (torch): codecs behind one interface, fills, metrics, registry and zoo.

The default codec's name lives here, where importing it loads no torch, so the daemons' configs
and the CLI can name it without loading the models.
"""

DEFAULT_CODEC = "cnn-rd-q4"
# Engines for a codec's transforms (semnet.models.backends); here so configs check the name
# without importing torch.
BACKENDS = ("auto", "eager", "openvino", "openvino-int8", "onnxruntime")
