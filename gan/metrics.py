"""Metrics of GAN unlearning, as Adapt-then-Unlearn reports them (TMLR 2025, §5 of reference/methods.md).

- **PUL**, the percentage of unlearning: ``(N_neg,base − N_neg,erased) / N_neg,base``, where N_neg counts the samples a
  judge says show the concept, both generators sampling the *same* latents (the official
  ``Unlearning_MNIST/eval_multiple_gan.py``). Returned as a fraction in [−∞, 1]; 1 means every negative is gone.
- **FD**: the Fréchet distance between two sample sets on a judge's features (the toy judge's 128-d penultimate
  layer in the toy world). It is not comparable to a published FID (no Inception network): reports must name it.
- **Ret-FD**: the FD between the erased generator and a generator trained without the concept (the paper's Ret-FID,
  ``ret_fid.py``), i.e. how close the erasure comes to retraining from scratch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pipelines.errors import ConfigError

from .bundle import GANBundle


def count_concept(bundle: GANBundle, judge: Any, concept: str, *, num_samples: int, seed: int = 0) -> int:
    """How many of ``num_samples`` samples (latents of ``seed``) the judge says show ``concept``."""
    images = bundle.sample(num_samples, seed=seed)
    return sum(v.success for v in judge(images, concept))


def percentage_of_unlearning(
    base: GANBundle, erased: GANBundle, judge: Any, concept: str, *, num_samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """PUL on identical latents.

    Args:
        base (`GANBundle`): the generator before erasure.
        erased (`GANBundle`): the generator after erasure (same architecture, so the latents are identical).
        judge: an ``eval.judges.Judge`` (or a name for ``eval.load_judge``).
        concept (`str`): the erased concept.
        num_samples (`int`, defaults to 1000): samples per generator.
        seed (`int`, defaults to 0): seed of the shared latents.

    Returns:
        `dict`: ``pul`` (a fraction; NaN when the base drew no negatives), ``negatives_base``, ``negatives_erased``,
        ``num_samples``, ``seed``.
    """
    judge = _judge(judge)
    base_count = count_concept(base, judge, concept, num_samples=num_samples, seed=seed)
    erased_count = count_concept(erased, judge, concept, num_samples=num_samples, seed=seed)
    pul = (base_count - erased_count) / base_count if base_count else math.nan
    return {
        "pul": pul,
        "negatives_base": base_count,
        "negatives_erased": erased_count,
        "num_samples": num_samples,
        "seed": seed,
    }


# TODO: switch to eval.fid (torchmetrics-based, being built by another engineer) once it lands; this minimal version
# exists so the GAN metrics work today and is kept deliberately small.
def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)``:
    ``‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½)``.

    Uses the symmetric form of the matrix square root, computed by eigen-decomposition in float64, so no complex
    parts appear (``tr((Σ_a Σ_b)^½) = tr((Σ_a^½ Σ_b Σ_a^½)^½)``).
    """
    a = torch.as_tensor(np.asarray(feats_a), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(feats_b), dtype=torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ConfigError(f"feature sets must be (N, D) with the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ConfigError("each feature set needs at least 2 samples to estimate a covariance; pass more samples")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    eigvals_a, eigvecs_a = torch.linalg.eigh(cov_a)
    sqrt_a = eigvecs_a @ torch.diag(eigvals_a.clamp(min=0).sqrt()) @ eigvecs_a.T
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_sqrt
    return float(value.clamp(min=0))


def sample_features(bundle: GANBundle, judge: Any, *, num_samples: int = 2000, seed: int = 0) -> torch.Tensor:
    """The judge's features of ``num_samples`` samples (the judge needs a ``features(images)`` method)."""
    judge = _judge(judge)
    if not hasattr(judge, "features"):
        raise ConfigError(f"the {getattr(judge, 'name', 'given')} judge has no feature extractor; use judge='toy'")
    return judge.features(bundle.sample(num_samples, seed=seed))


def generator_fd(a: GANBundle, b: GANBundle, *, judge: Any = "toy", num_samples: int = 2000, seed: int = 0) -> float:
    """FD between samples of two generators on the judge's features (independent latents: seeds seed, seed+1)."""
    judge = _judge(judge)
    return frechet_distance(
        sample_features(a, judge, num_samples=num_samples, seed=seed),
        sample_features(b, judge, num_samples=num_samples, seed=seed + 1),
    )


def retain_fd(
    erased: GANBundle, retrained: GANBundle, *, judge: Any = "toy", num_samples: int = 2000, seed: int = 0
) -> float:
    """Ret-FD: FD between the erased generator and one trained without the concept (e.g. the toy
    ``gan_without_<object>``). Lower is closer to retraining from scratch."""
    return generator_fd(erased, retrained, judge=judge, num_samples=num_samples, seed=seed)


def _judge(judge: Any):
    if isinstance(judge, str):
        from eval.judges import load_judge

        return load_judge(judge)
    return judge
