"""Distances between generators, as Adapt-then-Unlearn reports them (TMLR 2025, §5 of reference/methods.md).

- **FD**: the Fréchet distance between two sample sets on a judge's features (the toy judge's 128-d penultimate
  layer in the toy world). It is not comparable to a published FID (no Inception network): reports must name it.
- **Ret-FD**: the FD between the erased generator and a generator trained without the concept (the paper's Ret-FID,
  ``ret_fid.py``), i.e. how close the erasure comes to retraining from scratch.

Counting metrics that a method needs while it trains (PUL, object shares) live in ``gan.metrics``.
"""

from __future__ import annotations

from typing import Any

from pipelines.gan import GANBundle

from .fid import DistanceResult, frechet_distance


def generator_fd(
    a: GANBundle, b: GANBundle, *, features: Any = "toy", num_samples: int = 2000, seed: int = 0
) -> DistanceResult:
    """Fréchet distance between samples of two generators (independent latents: seeds ``seed`` and ``seed + 1``).

    Computed by :func:`eval.fid.frechet_distance` (torchmetrics), so the result names its feature network: with the
    default ``features="toy"`` it is ``FD-toy`` on the toy judge's penultimate features.
    """
    return frechet_distance(a.sample(num_samples, seed=seed), b.sample(num_samples, seed=seed + 1), features=features)


def retain_fd(
    erased: GANBundle, retrained: GANBundle, *, features: Any = "toy", num_samples: int = 2000, seed: int = 0
) -> DistanceResult:
    """Ret-FD: FD between the erased generator and one trained without the concept (e.g. the toy
    ``gan_without_<object>``). Lower is closer to retraining from scratch."""
    return generator_fd(erased, retrained, features=features, num_samples=num_samples, seed=seed)
