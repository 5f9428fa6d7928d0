"""A compact StyleGAN2 (Karras et al., CVPR 2020) in plain PyTorch, with rosinality-compatible state-dict keys.

Paper: "Analyzing and Improving the Image Quality of StyleGAN", https://arxiv.org/abs/1912.04958 . The layer layout and
the state-dict key names follow rosinality/stylegan2-pytorch (``model.py``), the implementation that Adapt-then-Unlearn
and most GAN-unlearning work build on, so its checkpoints load into these classes (``pipelines.gan.load``) and ours
export back (``pipelines.gan.export_rosinality``). The code is our own: no file of that repository is copied, and its
custom CUDA ops (``op/upfirdn2d``, ``op/fused_act``, compiled at import) are replaced by plain ``conv2d`` calls, so
everything runs on a CPU.

What is here:

- mapping network: pixel norm, then ``n_mlp`` equalized-learning-rate linear layers (learning-rate multiplier
  ``lr_mlp`` = 0.01), leaky ReLU;
- synthesis network: a learned 4x4 constant, modulated + demodulated 3x3 convolutions (Eq. 1-3 of the paper),
  per-pixel noise injection with a learned strength, upsampling by a transposed convolution followed by a
  [1, 3, 3, 1] blur, and toRGB skip connections whose running image is upsampled with the same filter;
- truncation (``truncation``, ``truncation_latent``, :meth:`Generator.mean_latent`) and style mixing (two latents
  and an ``inject_index``);
- discriminator: residual blocks with blurred stride-2 downsampling, a minibatch standard-deviation feature, a 3x3
  convolution and two linear layers.

Channel widths default to rosinality's table (512 up to 32x32, then ``channel_multiplier`` times 256, 128, ...);
``channels={resolution: width}`` overrides them, which is how the toy world's 32x32 generator stays small.

Differences from rosinality's code, all numerically equivalent or strictly more general:

- The modulated convolution scales the *activations* by the style and the *outputs* by the demodulation
  coefficients, then runs one ordinary convolution over the batch (the paper's Eq. 1-3 rearranged; rosinality's
  ``fused=False`` path). This is much faster on a CPU than one grouped convolution with per-sample weights.
- The minibatch standard-deviation group is the largest divisor of the batch that is at most ``stddev_group``, so
  any batch size works (rosinality's fails when the batch is not a multiple of the group).
- Random draws (noise, the mixing index) accept an optional ``torch.Generator`` for reproducible sampling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Leaky-ReLU slope 0.2 and gain sqrt(2), as in StyleGAN (and rosinality's FusedLeakyReLU).
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)
DEFAULT_BLUR_KERNEL = (1, 3, 3, 1)


def rosinality_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's channel width per resolution (``Generator.channels`` in its ``model.py``)."""
    return {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * channel_multiplier,
        128: 128 * channel_multiplier,
        256: 64 * channel_multiplier,
        512: 32 * channel_multiplier,
        1024: 16 * channel_multiplier,
    }


def _resolve_channels(size: int, channel_multiplier: int, channels: Mapping[Any, int] | None) -> dict[int, int]:
    table = rosinality_channels(channel_multiplier)
    if channels is not None:
        table.update({int(k): int(v) for k, v in channels.items()})
    needed = [2**i for i in range(2, int(math.log2(size)) + 1)]
    missing = [r for r in needed if r not in table]
    if missing:
        raise ValueError(f"channels has no width for resolutions {missing}; give one per resolution 4..{size}")
    return {r: table[r] for r in needed}


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two of at least 8 (e.g. 32, 256, 1024), got {size!r}")
    return size


# ---------------------------------------------------------------- filtering (upfirdn2d with plain conv2d)


def make_blur_kernel(taps: Sequence[float]) -> torch.Tensor:
    """The separable 2-D low-pass filter of a 1-D tap list, normalised to sum to one."""
    kernel = torch.tensor(list(taps), dtype=torch.float32)
    if kernel.ndim == 1:
        kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (a true convolution), then keep every ``down``-th pixel.

    The same operation as StyleGAN2's ``upfirdn2d`` for non-negative padding, written as one depthwise ``conv2d``.
    """
    batch, channels, height, width = x.shape
    if up > 1:
        spread = x.new_zeros(batch, channels, height * up, width * up)
        spread[:, :, ::up, ::up] = x
        x = spread
    pad0, pad1 = pad
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    """Low-pass filter with fixed padding (``kernel`` is a buffer, as in rosinality's ``Blur``)."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        # After zero-insertion upsampling by f, the filter needs a gain of f^2 to keep the mean.
        self.register_buffer("kernel", make_blur_kernel(taps) * upsample_factor**2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x upsampling: zero insertion followed by the blur filter (the toRGB skip path)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_blur_kernel(taps) * factor**2)
        extra = len(taps) - factor
        self.pad = ((extra + 1) // 2 + factor - 1, extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


# ---------------------------------------------------------------- equalized learning rate layers


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x + bias) * sqrt(2)``; the bias parameter is named like rosinality's ``FusedLeakyReLU``."""

    def __init__(self, channels: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is not None:
            x = x + self.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return F.leaky_relu(x, LEAKY_SLOPE) * LEAKY_GAIN


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weights drawn N(0, 1/lr_mul²), scaled by lr_mul/sqrt(fan_in) at run
    time (Karras et al. 2018, §4.1). With ``activation`` it applies the scaled leaky ReLU after the bias."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x, self.weight * self.scale, bias)
        if self.activation:
            out = F.leaky_relu(out, LEAKY_SLOPE) * LEAKY_GAIN
        return out


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (weights scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


# ---------------------------------------------------------------- generator layers


class PixelNorm(nn.Module):
    """Normalise each latent to unit root-mean-square (the mapping network's input layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's weight (de)modulation, Eq. 1-3: w'_ijk = s_i·w_ijk, w''_ijk = w'_ijk / sqrt(Σ_ik w'_ijk² + ε).

    Computed as conv(x·s, w)·d with d_j = (Σ_i s_i² Σ_k w_ijk² + ε)^-1/2, which equals the per-sample weight form.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            # A stride-2 transposed conv makes 2H+k-2 pixels; the blur's padding trims them back to 2H.
            factor = 2
            extra = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((extra + 1) // 2 + factor - 1, extra // 2 + 1), upsample_factor=factor)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        # Styles start at 1 (bias_init=1) so that an untrained modulation is the identity.
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        style = self.modulation(style)  # (B, in)
        weight = self.scale * self.weight.squeeze(0)  # (out, in, k, k)
        x = x * style[:, :, None, None]
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # Σ_ik (s_i w_ijk)² = s² @ (Σ_k w_ijk²)ᵀ, one small matrix product instead of a per-sample weight tensor.
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (B, out)
            out = out * demod[:, :, None, None]
        return out


class NoiseInjection(nn.Module):
    """Adds per-pixel Gaussian noise scaled by a learned strength (initialised at zero)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated convolution, noise, bias and scaled leaky ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, *, upsample=False, blur_kernel=None):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channels,
            out_channels,
            kernel_size,
            style_dim,
            upsample=upsample,
            blur_kernel=blur_kernel or DEFAULT_BLUR_KERNEL,
        )
        self.noise = NoiseInjection()
        self.activate = ScaledLeakyReLU(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """Modulated 1x1 convolution to RGB (no demodulation) added to the upsampled running image (skip architecture)."""

    def __init__(
        self, in_channels: int, style_dim: int, *, upsample: bool = True, blur_kernel=None, out_channels: int = 3
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel or DEFAULT_BLUR_KERNEL)
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator (config-F skip architecture), call-compatible with rosinality's ``Generator``.

    Args:
        size (`int`): output resolution, a power of two (32 for the toy world, 256 or 1024 for faces).
        style_dim (`int`): dimension of z and w (rosinality's ``--latent``; 512 for FFHQ, 128 in ATU's MNIST GAN).
        n_mlp (`int`): layers of the mapping network (8 in the paper).
        channel_multiplier (`int`, defaults to 2): widens resolutions of 64 and above (config-F: 2).
        blur_kernel (`Sequence[float]`, defaults to `(1, 3, 3, 1)`): taps of the resampling low-pass filter.
        lr_mlp (`float`, defaults to 0.01): learning-rate multiplier of the mapping network (paper: 0.01).
        channels (`Mapping[int, int]`, *optional*): width per resolution, overriding rosinality's table
            (e.g. ``{4: 128, 8: 128, 16: 64, 32: 32}`` for a small toy generator).
        image_channels (`int`, defaults to 3): channels of the output (3 for RGB; 4 for a generator of VAE
            latents that a frozen decoder turns into images).
        one_hot_blocks (`Sequence[tuple[int, int]]`, *optional*): ``(offset, size)`` blocks of z that are replaced
            by ``one_hot_scale`` times the one-hot of their arg-max before the mapping network. The generator stays
            ``G(z)`` with z ~ N(0, I); a block then names one of ``size`` discrete choices (an object, a colour)
            without the mapping network having to learn an arg-max (the toy GAN's latent partition).
        one_hot_scale (`float`, defaults to 4.0): the value of the hot entry.

    ``forward(styles, ...)`` returns ``(images, latents or None)``; images are ``(B, 3, size, size)``, about [-1, 1].
    """

    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        lr_mlp: float = 0.01,
        channels: Mapping[Any, int] | None = None,
        image_channels: int = 3,
        one_hot_blocks: Sequence[Sequence[int]] | None = None,
        one_hot_scale: float = 4.0,
    ):
        super().__init__()
        self.size = _check_size(size)
        self.image_channels = image_channels
        self.one_hot_blocks = [(int(offset), int(width)) for offset, width in one_hot_blocks or ()]
        if any(offset < 0 or width < 2 or offset + width > style_dim for offset, width in self.one_hot_blocks):
            raise ValueError(f"one_hot_blocks {self.one_hot_blocks} must be (offset, size >= 2) blocks inside z")
        self.one_hot_scale = float(one_hot_scale)
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.channel_multiplier = channel_multiplier
        self.blur_kernel = tuple(blur_kernel)
        self.lr_mlp = lr_mlp
        self.channel_overrides = {int(k): int(v) for k, v in channels.items()} if channels else None
        self.channels = _resolve_channels(size, channel_multiplier, channels)

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=self.blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False, out_channels=image_channels)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1  # noise inputs: one at 4x4, two per higher resolution
        self.n_latent = self.log_size * 2 - 2  # w vectors consumed: convs plus toRGBs (toRGBs share with the next)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, resolution, resolution))
        in_channels = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = self.channels[2**i]
            self.convs.append(
                StyledConv(in_channels, out_channels, 3, style_dim, upsample=True, blur_kernel=self.blur_kernel)
            )
            self.convs.append(StyledConv(out_channels, out_channels, 3, style_dim, blur_kernel=self.blur_kernel))
            self.to_rgbs.append(
                ToRGB(out_channels, style_dim, blur_kernel=self.blur_kernel, out_channels=image_channels)
            )
            in_channels = out_channels

    # ------------------------------------------------------------ configuration

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-friendly values (``channels`` keys are strings)."""
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channel_multiplier": self.channel_multiplier,
            "blur_kernel": list(self.blur_kernel),
            "lr_mlp": self.lr_mlp,
            "channels": {str(k): v for k, v in self.channel_overrides.items()} if self.channel_overrides else None,
            # Only when not RGB, so that a pixel generator's config stays rosinality's.
            **({"image_channels": self.image_channels} if self.image_channels != 3 else {}),
            **(
                {"one_hot_blocks": [list(b) for b in self.one_hot_blocks], "one_hot_scale": self.one_hot_scale}
                if self.one_hot_blocks
                else {}
            ),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Generator:
        return cls(**dict(config))

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    # ------------------------------------------------------------ latents and noise

    def make_noise(self, batch: int = 1, *, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One noise map per noise input, ``(batch, 1, H, W)``, drawn on the CPU from ``generator`` then moved."""
        noises = []
        for layer_idx in range(self.num_layers):
            resolution = 2 ** ((layer_idx + 5) // 2)
            noises.append(torch.randn(batch, 1, resolution, resolution, generator=generator).to(self.device))
        return noises

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean w of ``n_latent`` random z, ``(1, style_dim)``: the center for the truncation trick."""
        z = torch.randn(n_latent, self.style_dim, generator=generator).to(self.device)
        return self.get_latent(z).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Map z to w (through ``one_hot_blocks`` first, when the generator has them)."""
        if self.one_hot_blocks:
            z = z.clone()
            for offset, width in self.one_hot_blocks:
                block = z[:, offset : offset + width]
                z[:, offset : offset + width] = F.one_hot(block.argmax(1), width).to(z.dtype) * self.one_hot_scale
        return self.style(z)

    # ------------------------------------------------------------ forward

    def forward(
        self,
        styles: torch.Tensor | Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Synthesize images.

        Args:
            styles: one z ``(B, style_dim)`` or a list of one or two (two: style mixing); w if ``input_is_latent``
                (a ``(B, n_latent, style_dim)`` w+ tensor is used as is).
            return_latents (`bool`): also return the per-layer w+ ``(B, n_latent, style_dim)``.
            inject_index (`int`, *optional*): with two styles, layers before it take the first; random if unset.
            truncation (`float`, defaults to 1.0): ψ of the truncation trick, w ← w̄ + ψ·(w − w̄).
            truncation_latent (`torch.Tensor`, *optional*): w̄ (see :meth:`mean_latent`); needed when ψ < 1.
            input_is_latent (`bool`): ``styles`` are already w.
            noise (`list`, *optional*): one noise map per layer (see :meth:`make_noise`); ``None`` entries draw.
            randomize_noise (`bool`, defaults to `True`): draw fresh noise; else use the stored ``noises`` buffers.
            generator (`torch.Generator`, *optional*): source of the mixing index and of drawn noise.
        """
        if isinstance(styles, torch.Tensor):
            styles = [styles]
        styles = list(styles)
        if not 1 <= len(styles) <= 2:
            raise ValueError(f"styles holds {len(styles)} tensors; pass one, or two for style mixing")
        if not input_is_latent:
            styles = [self.get_latent(s) for s in styles]

        if noise is None:
            if randomize_noise:
                noise = [None] * self.num_layers
            else:
                noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if len(noise) != self.num_layers:
            raise ValueError(f"noise holds {len(noise)} maps; this generator has {self.num_layers} noise inputs")
        if generator is not None:
            batch = styles[0].shape[0]
            noise = [
                n
                if n is not None
                else torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), generator=generator).to(
                    styles[0].device
                )
                for i, n in enumerate(noise)
            ]

        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent; pass generator.mean_latent(4096)")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        if len(styles) == 1:
            latent = styles[0] if styles[0].ndim == 3 else styles[0].unsqueeze(1).expand(-1, self.n_latent, -1)
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent, (1,), generator=generator))
            if not 0 <= inject_index <= self.n_latent:
                raise ValueError(f"inject_index must be in [0, {self.n_latent}], got {inject_index}")
            first = styles[0].unsqueeze(1).expand(-1, inject_index, -1)
            second = styles[1].unsqueeze(1).expand(-1, self.n_latent - inject_index, -1)
            latent = torch.cat([first, second], 1)

        out = self.input(latent.shape[0])
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for up_conv, conv, noise_up, noise_same, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = up_conv(out, latent[:, i], noise=noise_up)
            out = conv(out, latent[:, i + 1], noise=noise_same)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return (skip, latent) if return_latents else (skip, None)


# ---------------------------------------------------------------- discriminator


class ConvLayer(nn.Sequential):
    """[blur] + equalized conv + [scaled leaky ReLU]; an ``nn.Sequential`` so that keys are ``<i>.weight``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        downsample: bool = False,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        bias: bool = True,
        activate: bool = True,
    ):
        layers: list[nn.Module] = []
        if downsample:
            # Blur first so the stride-2 convolution does not alias; padding keeps the output at H/2.
            extra = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((extra + 1) // 2, extra // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        # With an activation, the bias lives in the activation (rosinality's key layout).
        layers.append(
            EqualConv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(ScaledLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convolutions (the second downsamples) plus a 1x1 downsampling skip, summed with 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_channels, out_channels, 1, downsample=True, activate=False, bias=False, blur_kernel=blur_kernel
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with a minibatch standard-deviation feature; returns one logit per image.

    Args:
        size (`int`): input resolution, a power of two.
        channel_multiplier (`int`, defaults to 2): as for :class:`Generator`.
        blur_kernel (`Sequence[float]`, defaults to `(1, 3, 3, 1)`): downsampling low-pass filter taps.
        channels (`Mapping[int, int]`, *optional*): width per resolution, overriding rosinality's table.
        stddev_group (`int`, defaults to 4): samples per minibatch-stddev group (paper: 4).
        image_channels (`int`, defaults to 3): channels of the input (4 for a discriminator of VAE latents).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[float] = DEFAULT_BLUR_KERNEL,
        channels: Mapping[Any, int] | None = None,
        stddev_group: int = 4,
        image_channels: int = 3,
    ):
        super().__init__()
        self.size = _check_size(size)
        self.image_channels = image_channels
        self.channel_multiplier = channel_multiplier
        self.blur_kernel = tuple(blur_kernel)
        self.channel_overrides = {int(k): int(v) for k, v in channels.items()} if channels else None
        self.channels = _resolve_channels(size, channel_multiplier, channels)
        self.stddev_group = stddev_group
        self.stddev_feat = 1

        log_size = int(math.log2(size))
        convs: list[nn.Module] = [ConvLayer(image_channels, self.channels[size], 1)]
        in_channels = self.channels[size]
        for i in range(log_size, 2, -1):
            out_channels = self.channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channels, out_channels, self.blur_kernel))
            in_channels = out_channels
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_channels + 1, self.channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(self.channels[4] * 4 * 4, self.channels[4], activation=True),
            EqualLinear(self.channels[4], 1),
        )

    @property
    def config(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "channel_multiplier": self.channel_multiplier,
            "blur_kernel": list(self.blur_kernel),
            "channels": {str(k): v for k, v in self.channel_overrides.items()} if self.channel_overrides else None,
            "stddev_group": self.stddev_group,
            **({"image_channels": self.image_channels} if self.image_channels != 3 else {}),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Discriminator:
        return cls(**dict(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_linear[1](self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features φ(x), ``(B, channels[4])``: ``forward`` is a linear read-out of them, and a
        projection discriminator (Miyato & Koyama 2018) adds ⟨embed(y), φ(x)⟩ for a label y."""
        out = self.convs(x)
        batch, channels, height, width = out.shape
        # Minibatch stddev (Karras et al. 2018, §3): the mean over features of each group's per-pixel stddev, as one
        # extra channel, lets D see the variety of a batch. The group is the largest divisor of the batch ≤ 4.
        group = max(g for g in range(1, min(batch, self.stddev_group) + 1) if batch % g == 0)
        stddev = out.view(group, -1, self.stddev_feat, channels // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear[0](out.reshape(batch, -1))


# ---------------------------------------------------------------- inferring a config from a rosinality state dict

_STYLE_KEY = re.compile(r"^style\.(\d+)\.weight$")
_TO_RGB_KEY = re.compile(r"^to_rgbs\.(\d+)\.conv\.weight$")


def infer_generator_config(state: Mapping[str, torch.Tensor], *, lr_mlp: float = 0.01) -> dict[str, Any]:
    """Rebuild :class:`Generator` arguments from a rosinality-layout state dict's tensor shapes.

    Raises:
        KeyError: a key every StyleGAN2 generator has is missing (the caller turns it into a clear error).
    """
    style_dim = int(state["conv1.conv.modulation.weight"].shape[1])
    n_mlp = sum(1 for k in state if _STYLE_KEY.match(k))
    n_to_rgbs = sum(1 for k in state if _TO_RGB_KEY.match(k))
    log_size = n_to_rgbs + 2
    size = 2**log_size
    channels = {4: int(state["input.input"].shape[1])}
    for i in range(3, log_size + 1):
        channels[2**i] = int(state[f"convs.{2 * (i - 3)}.conv.weight"].shape[1])
    multiplier = _matching_multiplier(channels)
    return {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": multiplier if multiplier is not None else 2,
        "blur_kernel": list(DEFAULT_BLUR_KERNEL),
        "lr_mlp": lr_mlp,
        "channels": None if multiplier is not None else {str(k): v for k, v in channels.items()},
    }


def infer_discriminator_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Rebuild :class:`Discriminator` arguments from a rosinality-layout state dict's tensor shapes."""
    n_blocks = sum(1 for k in state if re.match(r"^convs\.\d+\.conv1\.0\.weight$", k))
    size = 2 ** (n_blocks + 2)
    channels = {size: int(state["convs.0.0.weight"].shape[0])}
    for block in range(1, n_blocks + 1):
        channels[size // 2**block] = int(state[f"convs.{block}.conv2.1.weight"].shape[0])
    multiplier = _matching_multiplier(channels)
    return {
        "size": size,
        "channel_multiplier": multiplier if multiplier is not None else 2,
        "blur_kernel": list(DEFAULT_BLUR_KERNEL),
        "channels": None if multiplier is not None else {str(k): v for k, v in channels.items()},
        "stddev_group": 4,
    }


def _matching_multiplier(channels: Mapping[int, int]) -> int | None:
    """The rosinality channel multiplier that reproduces ``channels`` (2 preferred when several do), or ``None``."""
    for multiplier in (2, 1, 4):
        table = rosinality_channels(multiplier)
        if all(table.get(r) == c for r, c in channels.items()):
            return multiplier
    return None
