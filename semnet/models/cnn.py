"""CNN codec in the deep-JSCC style (paper 001 §III-B baseline, without entropy coding).

5x5 stride-2 stages with GDN down to a C-channel latent at 1/``stride`` resolution, squashed into
the quantizer range by tanh; the decoder mirrors it with IGDN. The channel-bandwidth ratio is
C / (3 * stride^2): ``cbr`` in the config picks C.

The Semantic Equalization Mechanism (001 §IV, ``semnet.models.sem``) is optional, after the
encoder and before quantization as in Algorithm 1: ``dynamic_scale`` makes the last convolution
a Dynamic Scale layer (its tanh is the existing one); ``broadcast`` = K > 0 appends Neighbouring
Semantic Broadcast over K channels. With both off the module tree (and state dict) is the
baseline's. ``blocks`` = B > 0 adds B residual blocks to each half at twice the latent
resolution, named ``r0``, ``r1``, ... so the other layers keep their names and a checkpoint
without them still seeds one with them (``init_from``; the blocks start as the identity).
The registry's ``cnn-scale``, ``cnn-nsb`` and ``cnn-sem`` are the functions below.
"""

import math
from collections import OrderedDict
from typing import Any

from torch import nn

from semnet.models.codec import Codec
from semnet.models.layers import GDN, ResidualBlock, down, up
from semnet.models.sem import DynamicScaleConv, NeighbourBroadcast


class CNNCodec(Codec):
    def __init__(
        self,
        cbr: float = 1 / 12,
        hidden: int = 128,
        bits: int = 5,
        stride: int = 16,
        dynamic_scale: bool = False,
        broadcast: int = 0,
        blocks: int = 0,
    ) -> None:
        stages = round(math.log2(stride))
        if stride < 4 or 2**stages != stride:
            raise ValueError(f"stride {stride} is not a power of two >= 4")
        super().__init__(cbr, stride, bits)
        channels = self.latent_channels
        n = hidden
        enc: list[nn.Module] = [down(3, n), GDN(n)]
        dec: list[nn.Module] = [up(channels, n), GDN(n, inverse=True)]
        for _ in range(stages - 2):
            enc += [down(n, n), GDN(n)]
            dec += [up(n, n), GDN(n, inverse=True)]
        last = DynamicScaleConv(n, channels) if dynamic_scale else down(n, channels)
        sem = [NeighbourBroadcast(channels, broadcast)] if broadcast else []
        # after the encoder's last GDN and the decoder's first IGDN: twice the latent resolution
        self.encoder = _with_blocks([*enc, last, nn.Tanh(), *sem], len(enc), n, blocks)
        self.decoder = _with_blocks([*dec, up(n, 3)], 2, n, blocks)


def _with_blocks(layers: list[nn.Module], at: int, channels: int, blocks: int) -> nn.Sequential:
    """``layers`` as a Sequential named 0, 1, ..., with ``blocks`` residual blocks before ``at``."""
    named = [(str(i), layer) for i, layer in enumerate(layers)]
    extra = [(f"r{i}", ResidualBlock(channels)) for i in range(blocks)]
    return nn.Sequential(OrderedDict(named[:at] + extra + named[at:]))


def cnn_scale(**backbone: Any) -> CNNCodec:
    """CNN + Dynamic Scale (architecture ``cnn-scale``, 001 §IV-B); ``backbone``: CNNCodec's."""
    return CNNCodec(**backbone, dynamic_scale=True)


def cnn_nsb(k: int = 3, **backbone: Any) -> CNNCodec:
    """CNN + Neighbouring Semantic Broadcast over K channels (architecture ``cnn-nsb``, §IV-C)."""
    return CNNCodec(**backbone, broadcast=k)


def cnn_sem(k: int = 3, **backbone: Any) -> CNNCodec:
    """CNN + both SEM modules (architecture ``cnn-sem``, §IV): Dynamic Scale, then NSB."""
    return CNNCodec(**backbone, dynamic_scale=True, broadcast=k)
