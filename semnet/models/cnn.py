"""CNN codec in the deep-JSCC style (paper 001 §III-B baseline, without entropy coding).

5x5 stride-2 stages with GDN down to a C-channel latent at 1/``stride`` resolution, squashed into
the quantizer range by tanh; the decoder mirrors it with IGDN. The channel-bandwidth ratio is
C / (3 * stride^2): ``cbr`` in the config picks C.
"""

import math

from torch import nn

from semnet.models.codec import Codec, QuantDefaults
from semnet.models.layers import GDN, down, up


class CNNCodec(Codec):
    def __init__(self, cbr: float = 1 / 12, hidden: int = 128, bits: int = 5,
                 stride: int = 16) -> None:
        stages = round(math.log2(stride))
        if stride < 4 or 2**stages != stride:
            raise ValueError(f"stride {stride} is not a power of two >= 4")
        channels = round(cbr * 3 * stride**2)
        if channels < 1:
            raise ValueError(f"cbr {cbr} gives no latent channels at stride {stride}")
        super().__init__(channels)
        self.stride = stride
        self.quant = QuantDefaults(kind="uniform", bits=bits, lo=-1.0, hi=1.0)
        n = hidden
        enc: list[nn.Module] = [down(3, n), GDN(n)]
        dec: list[nn.Module] = [up(channels, n), GDN(n, inverse=True)]
        for _ in range(stages - 2):
            enc += [down(n, n), GDN(n)]
            dec += [up(n, n), GDN(n, inverse=True)]
        self.encoder = nn.Sequential(*enc, down(n, channels), nn.Tanh())
        self.decoder = nn.Sequential(*dec, up(n, 3))
