"""Perceptual distances between a GAN's images, shared by the GAN methods (``gan/``), so they live below them.

Text-to-Unlearn holds the samples it should not change with a perceptual term (LPIPS in the paper), and
Adapt-then-Unlearn's retain anchor and output repulsion compare their samples in the same spaces. Each distance is a
callable ``(images, reference, weights=None, reduction="mean")`` on images in [0, 1]: the mean over samples of a
per-sample distance, weighted per sample when ``weights`` is given; ``reduction="none"`` returns the per-sample
distances (weighted) instead, as ``torch.nn.functional`` losses do.

- ``"judge"``: the squared distance between the toy judge's penultimate features (its FD-toy space), the toy world's
  perceptual network (it reads 32x32 images); measure anything trained with it with ``toy-heldout``.
- ``"lpips:alex"`` / ``"lpips:vgg"`` / ``"lpips:squeeze"``: torchmetrics' LPIPS on that backbone; the backbone's
  ImageNet weights come from torchvision's cache (nothing is downloaded here).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import ConfigError, MissingDependencyError, MissingWeightsError
from .gan import GANBundle

PerceptualDistance = Callable[..., torch.Tensor]
"""``(images, reference, weights=None, reduction="mean") -> scalar`` (or ``(N,)`` with ``reduction="none"``): images
in [0, 1], ``weights`` per sample."""

PERCEPTUAL_SPACES = ("judge", "lpips:alex", "lpips:vgg", "lpips:squeeze")


def perceptual_distance(
    space: str, bundle: GANBundle, *, option: str = "perceptual", fallback: str = "none"
) -> PerceptualDistance:
    """The distance named ``space`` (one of :data:`PERCEPTUAL_SPACES`), on ``bundle``'s device.

    ``option`` names the config field and ``fallback`` its value without a perceptual network, for error messages.
    """
    if space == "judge":
        return judge_feature_distance(bundle, option=option, fallback=fallback)
    if space.startswith("lpips:") and space in PERCEPTUAL_SPACES:
        return lpips_distance(space.split(":", 1)[1], bundle.device, option=option, fallback=fallback)
    raise ConfigError(f"{option}={space!r} is not one of {', '.join(PERCEPTUAL_SPACES)}")


def judge_feature_distance(
    bundle: GANBundle, *, option: str = "perceptual", fallback: str = "none"
) -> PerceptualDistance:
    """The squared distance between the toy judge's penultimate features, as LPIPS compares deep features."""
    if bundle.size != 32:
        raise ConfigError(
            f"{option}='judge' uses the toy judge, which reads 32x32 images; this GAN draws {bundle.size}x"
            f"{bundle.size}: use {option}='lpips:alex' or {option}={fallback!r}"
        )
    from .toy.judge import installed_toy_judge

    net = installed_toy_judge().net.to(bundle.device)

    def distance(
        images: torch.Tensor, reference: torch.Tensor, weights: torch.Tensor | None = None, reduction: str = "mean"
    ) -> torch.Tensor:
        per_sample = (net.features(images * 2 - 1) - net.features(reference * 2 - 1)).pow(2).mean(-1)
        return _reduce(per_sample, weights, reduction)

    return distance


def lpips_distance(
    net_type: str, device: torch.device, *, option: str = "perceptual", fallback: str = "none"
) -> PerceptualDistance:
    """torchmetrics' LPIPS (Zhang et al. 2018) on the ``alex``, ``vgg`` or ``squeeze`` backbone."""
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError as err:  # torchmetrics' LPIPS needs torchvision
        raise MissingDependencyError(f"{option}='lpips:...' needs torchmetrics[image]") from err
    try:
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True).to(device)
    except Exception as err:  # the backbone's ImageNet weights come from torchvision's cache or the network
        raise MissingWeightsError(
            f"LPIPS ({net_type}) needs torchvision's pretrained {net_type} weights in $TORCH_HOME/hub/checkpoints "
            f"and nothing is downloaded here; copy them there from a connected machine, or use {option}={fallback!r}"
        ) from err
    metric.requires_grad_(False)

    def distance(
        images: torch.Tensor, reference: torch.Tensor, weights: torch.Tensor | None = None, reduction: str = "mean"
    ) -> torch.Tensor:
        per_sample = metric.net(images, reference, normalize=True).view(-1)
        return _reduce(per_sample, weights, reduction)

    return distance


def _reduce(per_sample: torch.Tensor, weights: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if weights is not None:
        per_sample = weights * per_sample
    if reduction == "none":
        return per_sample
    if reduction == "mean":
        return per_sample.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
