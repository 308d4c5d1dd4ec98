"""A tiny convolutional autoencoder as a semnet codec plug-in (architecture ``tiny-ae``).

Three 5x5 stride-2 convolutions down to ``channels`` latent channels at 1/8 resolution, three
transposed ones back. No tanh at the end: the latent has whatever range training gives it, and
is sent with the asymmetric quantizer (each frame's own min and max travel in its descriptor),
declared here and chosen again in the model config (tiny-ae.yaml), so the zoo manifest says it.

semnet finds the class through the ``semnet.codecs`` entry point in pyproject.toml; nothing in
semnet is edited or patched. See docs/plugins.md.
"""

from torch import nn

from semnet.models.codec import Codec, QuantDefaults

__all__ = ["TinyAE"]


class TinyAE(Codec):
    def __init__(self, channels: int = 16, hidden: int = 32, bits: int = 8) -> None:
        # The base class keeps the stride (for padding and the latent shape), the channel count
        # and a `channel_mean` buffer that training fills for the receiver's "mean" fill.
        super().__init__(stride=8, bits=bits, channels=channels)
        self.quant = QuantDefaults(kind="asymmetric", bits=bits, lo=-1.0, hi=1.0)
        n = hidden
        self.encoder = nn.Sequential(
            nn.Conv2d(3, n, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(n, n, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(n, channels, 5, stride=2, padding=2),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(channels, n, 5, stride=2, padding=2, output_padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(n, 3, 5, stride=2, padding=2, output_padding=1),
        )
