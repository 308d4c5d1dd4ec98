"""MIJSCC: the multi-task codec of paper 004 (issue 19) — one latent for reconstruction and
classification, with the adaptive channel mask and attention re-weighting of A-MIJSCC (§IV).

What ships (``MIJSCCCodec``, architecture ``mijscc``):

* encoder E_α = E_φ ∘ E_ω (§III-B, eq. 16): E_ω gives the local feature map f at twice the
  latent resolution, E_φ summarises it into the latent z (C channels at 1/``stride``, tanh);
* decoder D_β (eq. 5) with a sigmoid output, as Table I;
* a classifier ψ (§II-A3, the paper's 3-layer fully connected network) that reads the
  *received* latent after fill: :meth:`MIJSCCCodec.classify`;
* the condition encoder N_enc (§IV eq. 19-21): a monotone 4-layer MLP from the reported channel
  condition (loss rate, mean burst length, SNR in link mode) to non-negative per-channel scores
  g, the upper-triangular cumulative sum g̃ = U g and the threshold η give the end index k of
  the active channel prefix: :meth:`MIJSCCCodec.end_index`;
* the attention module N_attn (§IV eq. 23), here at the receiver: two fully connected layers
  give a weight per channel from what arrived, applied to the received channels only:
  :meth:`MIJSCCCodec.enhance`.

Training-only (never in the checkpoint): the global and local Jensen-Shannon MI estimators of
eq. 13-17 (:class:`GlobalDiscriminator`, :class:`LocalDiscriminator`, :func:`js_mi`); the
trainer is ``semnet.models.mijscc_train``.

Quantization is the asymmetric q-bit quantizer of §II-B (eq. 8-11, ``semnet.core.quant``): the
config's ``quant: {kind: asymmetric, bits: q}``.

Direction of the mask (stated, tested): k is non-decreasing in the loss rate and the burst
length and non-increasing in the SNR — a worse channel activates more channels, a clean one
fewer, as the paper's "low SNR activates more dimensions".

Note on eq. 20: the paper writes g̃ = g·U with U_ij = 1 for i ≤ j, which for a row vector g is
the *prefix* sum (non-decreasing in j), yet states g̃_j ≥ g̃_{j+1}. We implement what the text
asks for, g̃ = U g, i.e. g̃_j = Σ_{i ≥ j} g_i: non-increasing in j, so {j : g̃_j > η} is a prefix
and one end index describes the mask.
"""

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from semnet.models.codec import Codec
from semnet.models.layers import ResidualBlock, down, up

LABEL_SETS = ("fashion-mnist", "imagenet")
# Condition features: each in [0, 1], 0 = a perfect channel, 1 = the worst the encoder knows.
BURST_LOG2_MAX = 4.0  # mean burst 16 datagrams and longer count as the longest
SNR_GOOD_DB, SNR_BAD_DB = 30.0, 0.0  # link mode: 30 dB and above is clean, 0 dB and below worst
PROFILE_LOG_STEP = 0.25  # N_enc: log d(u) moves this much per channel of end index


def condition_features(
    loss: float | torch.Tensor, burst: float | torch.Tensor = 1.0, snr_db=None
) -> torch.Tensor:
    """(loss rate, mean burst length, SNR in dB or None) -> (..., 3) "badness" features in
    [0, 1], each non-decreasing as the channel gets worse. ``snr_db`` None (packet mode, no PHY
    report) is a clean link."""
    loss = torch.as_tensor(loss, dtype=torch.float32).clamp(0.0, 1.0)
    burst = torch.as_tensor(burst, dtype=torch.float32).clamp(min=1.0)
    b = (torch.log2(burst) / BURST_LOG2_MAX).clamp(0.0, 1.0)
    if snr_db is None:
        s = torch.zeros_like(loss)
    else:
        snr = torch.as_tensor(snr_db, dtype=torch.float32)
        s = ((SNR_GOOD_DB - snr) / (SNR_GOOD_DB - SNR_BAD_DB)).clamp(0.0, 1.0)
    loss, b, s = torch.broadcast_tensors(loss, b, s)
    return torch.stack([loss, b, s], dim=-1)


class MonotoneLinear(nn.Module):
    """A linear layer whose weights are kept non-negative (softplus of a free parameter): with
    non-decreasing activations between, the network is non-decreasing in every input."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        w = 1.0 / math.sqrt(cin)  # softplus(raw) starts near 1/sqrt(fan-in)
        self.raw = nn.Parameter(math.log(math.expm1(w)) + 0.1 * torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.softplus(self.raw), self.bias)


class ConditionEncoder(nn.Module):
    """N_enc (eq. 19): channel condition features (..., 3) -> g (..., C), every g_i >= 0 and
    non-decreasing in every feature (Appendix B's property, here by construction).

    A 4-layer monotone MLP gives a scalar demand d(u) > 0; g = d(u) · e^a, a positive channel
    profile (kept as its logarithm a, so float16 checkpoints hold it). The product form keeps g
    monotone and makes the end index a monotone function of the one scalar d (calibration fits
    d; the profile fixes the spacing).
    """

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        dims = [3, hidden, hidden, hidden, 1]  # 4 layers, as the paper's MLP
        self.layers = nn.ModuleList(
            MonotoneLinear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        # profile with geometric suffix sums S_j = e^{w (C - j)}: each end index k owns an
        # interval of the same width w in log d (a scalar fit then resolves every k alike)
        w = PROFILE_LOG_STEP
        j = torch.arange(channels, dtype=torch.float64)
        log_p = w * (channels - j - 1) + math.log(math.expm1(w))
        log_p[-1] = w
        self.profile = nn.Parameter(log_p.float())

    def reset(self) -> None:
        """Back to the initialisation (calibration fits N_enc from scratch; torch's RNG)."""
        hidden, channels = self.layers[0].raw.shape[0], self.profile.shape[0]
        self.load_state_dict(ConditionEncoder(channels, hidden).state_dict())

    def demand(self, u: torch.Tensor) -> torch.Tensor:
        """log d(u) (...,): non-decreasing in every feature."""
        h = u
        for layer in self.layers[:-1]:
            # increasing (tanh, not a convex softplus: with non-negative weights a softplus
            # network could only be convex in u); the MLP stays non-decreasing in every input
            h = torch.tanh(layer(h))
        return self.layers[-1](h).squeeze(-1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.demand(u)[..., None] + self.profile)


def suffix_sum(g: torch.Tensor) -> torch.Tensor:
    """g̃ = U g (eq. 20 as the text means it): g̃_j = Σ_{i >= j} g_i, non-increasing in j."""
    return g.flip(-1).cumsum(-1).flip(-1)


def prefix_mask(k: torch.Tensor | int, channels: int, device=None) -> torch.Tensor:
    """(..., C) bool: channel j is active when j < k."""
    k = torch.as_tensor(k, device=device)
    return torch.arange(channels, device=k.device) < k[..., None]


class ChannelAttention(nn.Module):
    """N_attn (eq. 23) at the receiver: from each channel's mean over what arrived and the
    fraction of it that arrived, two fully connected layers give a weight w_c in (0, 2) per
    channel; received entries are multiplied by it, everything else is left as it is. The last
    layer starts at zero, so an untrained module is the identity (w = 1)."""

    def __init__(self, channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def weights(self, y: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        got = received.to(y.dtype)
        frac = got.mean(dim=(2, 3))
        pooled = (y * got).sum(dim=(2, 3)) / got.sum(dim=(2, 3)).clamp(min=1.0)
        return 2.0 * torch.sigmoid(self.fc2(F.relu(self.fc1(torch.cat([pooled, frac], 1)))))

    def forward(self, y: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
        w = self.weights(y, received)[:, :, None, None]
        return torch.where(received, y * w, y)


class MIJSCCCodec(Codec):
    """The MIJSCC codec (architecture ``mijscc``): a Codec (encode, decode, latent_shape) plus
    :meth:`classify`, :attr:`class_names`, :meth:`end_index`, :meth:`enhance`.

    ``channels`` latent channels at 1/``stride`` (a power of two >= 4), ``hidden`` feature
    channels, ``labels`` the class set of the head (``fashion-mnist``: 10, ``imagenet``: 1000),
    ``head_pool`` the head's adaptive pooling (P x P positions per channel), ``head_hidden`` its
    width, ``eta`` the pruning threshold η of eq. 21, ``min_channels`` the smallest end index.
    """

    # Modules off the encode -> decode path (the classifier, N_enc) or reached only through a
    # zero-initialised layer (N_attn): generic codec tests that expect every parameter to get
    # a gradient from reconstruction skip them; tests/test_mijscc.py covers them.
    SIDE_MODULES = ("head", "condition", "attention")

    def __init__(
        self,
        channels: int = 32,
        stride: int = 8,
        hidden: int = 64,
        bits: int = 5,
        labels: str = "fashion-mnist",
        head_pool: int = 4,
        head_hidden: int = 256,
        eta: float = 1.0,
        min_channels: int = 1,
        condition_hidden: int = 16,
        attention_hidden: int = 64,
    ) -> None:
        stages = round(math.log2(stride))
        if stride < 4 or 2**stages != stride:
            raise ValueError(f"stride {stride} is not a power of two >= 4")
        if labels not in LABEL_SETS:
            raise ValueError(f"labels {labels!r} is not one of {', '.join(LABEL_SETS)}")
        if not eta > 0:
            raise ValueError(f"eta {eta} must be > 0")
        if not 1 <= min_channels <= channels:
            raise ValueError(f"min_channels {min_channels} must be in 1..{channels}")
        super().__init__(stride=stride, bits=bits, channels=channels)
        self.labels, self.eta, self.min_channels = labels, float(eta), min_channels
        n, c = hidden, channels
        # E_ω: to the local feature map f at twice the latent resolution (eq. 16)
        omega: list[nn.Module] = [nn.Conv2d(3, n, 3, padding=1), nn.ReLU()]
        for _ in range(stages - 1):
            omega += [down(n, n), nn.ReLU(), ResidualBlock(n)]
        # E_φ: f -> z, tanh so the latent sits in [-1, 1] before the asymmetric quantizer
        phi = [ResidualBlock(n), down(n, c), nn.Tanh()]
        self.encoder = nn.Sequential(
            OrderedDict(features=nn.Sequential(*omega), summarize=nn.Sequential(*phi))
        )
        dec: list[nn.Module] = [up(c, n), nn.ReLU(), ResidualBlock(n)]
        for _ in range(stages - 1):
            dec += [up(n, n), nn.ReLU()]
        self.decoder = nn.Sequential(*dec, nn.Conv2d(n, 3, 3, padding=1), nn.Sigmoid())
        classes = 10 if labels == "fashion-mnist" else 1000
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(head_pool),
            nn.Flatten(),
            nn.Linear(c * head_pool**2, head_hidden),
            nn.ReLU(),
            nn.Linear(head_hidden, head_hidden),
            nn.ReLU(),
            nn.Linear(head_hidden, classes),
        )
        self.condition = ConditionEncoder(c, condition_hidden)
        self.attention = ChannelAttention(c, attention_hidden)

    # --- the codec interface --------------------------------------------------------------

    def encode_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f, z) of an image batch: E_ω's local feature map and the latent (training's MI)."""
        f = self.encoder.features(self.pad(x))
        return f, self.encoder.summarize(f)

    def received_of(self, y: torch.Tensor, received: torch.Tensor | None) -> torch.Tensor:
        """The received mask as (N, C, h, w) bool: given as (N, C) or (N, C, h, w), or None:
        inferred as every entry of a channel that is not identically zero (zero fill puts exact
        zeros where units were lost or never sent; an asymmetric quantizer's levels are almost
        never exactly 0). Pass the real mask with any other fill."""
        if received is None:
            received = (y != 0).flatten(2).any(dim=2)
        if received.dim() == 2:
            received = received[:, :, None, None]
        return received.to(torch.bool).expand_as(y)

    def enhance(
        self, y: torch.Tensor, received: torch.Tensor | None = None, k: int | None = None
    ) -> torch.Tensor:
        """z* = N_attn(z') (eq. 23) on the filled latent: the received channels re-weighted,
        the rest untouched. ``received`` as :meth:`received_of`; with ``k`` (the frame's end
        index) the channels from k on count as not received whatever they hold."""
        got = self.received_of(y, received)
        if k is not None:
            got = got & prefix_mask(k, self.latent_channels, y.device)[None, :, None, None]
        return self.attention(y, got)

    def synthesize(self, y: torch.Tensor, received: torch.Tensor | None = None) -> torch.Tensor:
        """D_β(N_attn(ŷ)): the plain pipeline (``decode``) gets the attention too, with the
        received mask inferred from the zero-filled latent."""
        return self.decoder(self.enhance(y, received))

    # --- classification --------------------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        if self.labels == "fashion-mnist":
            from semnet.models.fashion_mnist import CLASS_NAMES

            return CLASS_NAMES
        from semnet.models import classifier

        return tuple(classifier.class_name(i) for i in range(1000))

    def classify(
        self, y: torch.Tensor, received: torch.Tensor | None = None, k: int | None = None
    ) -> torch.Tensor:
        """ψ(ẑ): class logits (N, classes) of the received latent after fill (and attention)."""
        return self.head(self.enhance(y, received, k))

    # --- A-MIJSCC: the end index from the channel condition --------------------------------

    def scores(self, u: torch.Tensor) -> torch.Tensor:
        """g̃ = U · N_enc(u) for condition features u (..., 3): (..., C), non-increasing in j."""
        return suffix_sum(self.condition(u))

    def end_indices(self, u: torch.Tensor) -> torch.Tensor:
        """k = |{j : g̃_j > η}| (eq. 21) for features u (..., 3), at least ``min_channels``."""
        k = (self.scores(u) > self.eta).sum(-1)
        return k.clamp(min=self.min_channels)

    @torch.no_grad()
    def end_index(self, condition: "Sequence[float | None] | dict") -> int:
        """The end index k of the active prefix (channels 0..k-1 are sent) for a reported
        channel condition: ``(loss_rate, mean_burst[, snr_db])`` or a dict with keys
        ``loss``, ``burst`` (default 1), ``snr_db`` (default None: packet mode). Non-decreasing
        in loss and burst, non-increasing in SNR."""
        if isinstance(condition, dict):
            loss = condition.get("loss", 0.0)
            burst = condition.get("burst", 1.0)
            snr = condition.get("snr_db")
        else:
            loss, burst, *rest = condition
            snr = rest[0] if rest else None
        u = condition_features(float(loss), float(burst), None if snr is None else float(snr))
        return int(self.end_indices(u.to(self.channel_mean.device)))

    def truncate(self, y: torch.Tensor, k: int) -> torch.Tensor:
        """The latent with channels k.. zeroed (what the receiver sees of a k-prefix frame)."""
        keep = prefix_mask(k, self.latent_channels, y.device)[None, :, None, None]
        return torch.where(keep, y, torch.zeros((), dtype=y.dtype, device=y.device))


# --- training-only: the MI estimators of eq. 13-17 ------------------------------------------


def js_mi(joint: torch.Tensor, marginal: torch.Tensor) -> torch.Tensor:
    """Î^(JS) (eq. 13): E_joint[-softplus(-T)] - E_marginal[softplus(T)], at most 0, higher the
    better the discriminator tells matched pairs from shuffled ones."""
    return (-F.softplus(-joint)).mean() - F.softplus(marginal).mean()


def shuffled(t: torch.Tensor) -> torch.Tensor:
    """The batch rolled by one: each sample paired with another's (the fake s' of Alg. 1)."""
    return t.roll(1, dims=0)


class GlobalDiscriminator(nn.Module):
    """T_θg (Table II): two convolutions on the image, flattened and concatenated with the
    latent (both pooled to ``pool`` x ``pool`` so any image size works), three fully connected
    layers to a score."""

    def __init__(self, channels: int, pool: int = 4, width: int = 128) -> None:
        super().__init__()
        self.pool = pool
        self.image = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
        )
        self.fc = nn.Sequential(
            nn.Linear(32 * pool * pool + channels * pool * pool, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, 1),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        a = F.adaptive_avg_pool2d(self.image(x), self.pool).flatten(1)
        b = F.adaptive_avg_pool2d(z, self.pool).flatten(1)
        return self.fc(torch.cat([a, b], 1)).squeeze(1)

    def mi(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Ω^global (eq. 15) on a batch: real pairs (s, z), fake pairs (s', z)."""
        return js_mi(self(x, z), self(shuffled(x), z))


class LocalDiscriminator(nn.Module):
    """T_θl (Table II): the latent summarised to a vector (pooled to ``pool`` x ``pool``),
    expanded over the feature map, concatenated with it, three 1x1 convolutions to a score per
    position (eq. 17 averages over the N² positions)."""

    def __init__(self, features: int, channels: int, pool: int = 2, width: int = 64) -> None:
        super().__init__()
        self.pool = pool
        self.net = nn.Sequential(
            nn.Conv2d(features + channels * pool * pool, width, 1),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        v = F.adaptive_avg_pool2d(z, self.pool).flatten(1)
        v = v[:, :, None, None].expand(-1, -1, *f.shape[-2:])
        return self.net(torch.cat([f, v], 1)).squeeze(1)

    def mi(self, f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Ω^local (eq. 17): the JS estimate averaged over the feature map's positions, fake
        feature maps from the shuffled batch (E_ω(s'))."""
        return js_mi(self(f, z), self(shuffled(f), z))
