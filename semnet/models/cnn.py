"""CNN codec in the deep-JSCC style (paper 001 §III-B baseline, without entropy coding).

Four 5x5 stride-2 stages with GDN down to a C-channel latent at 1/16 resolution, squashed into
the quantizer range by tanh; the decoder mirrors it with IGDN. The channel-bandwidth ratio is
C / (3 * 16 * 16): ``cbr`` in the config picks C.
"""

from torch import nn

from semnet.models.codec import Codec, QuantDefaults
from semnet.models.layers import GDN, down, up


class CNNCodec(Codec):
    stride = 16

    def __init__(self, cbr: float = 1 / 12, hidden: int = 128, bits: int = 5) -> None:
        channels = round(cbr * 3 * self.stride**2)
        if channels < 1:
            raise ValueError(f"cbr {cbr} gives no latent channels")
        super().__init__(channels)
        self.quant = QuantDefaults(kind="uniform", bits=bits, lo=-1.0, hi=1.0)
        n = hidden
        self.encoder = nn.Sequential(
            down(3, n), GDN(n), down(n, n), GDN(n), down(n, n), GDN(n), down(n, channels), nn.Tanh()
        )
        self.decoder = nn.Sequential(
            up(channels, n),
            GDN(n, inverse=True),
            up(n, n),
            GDN(n, inverse=True),
            up(n, n),
            GDN(n, inverse=True),
            up(n, 3),
        )
