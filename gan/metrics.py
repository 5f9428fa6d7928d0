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

import torch

from eval.fid import DistanceResult, frechet_distance

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


def top_class_frequency(probabilities: torch.Tensor, names: list[str]) -> dict[str, float]:
    """How often each class is a classifier head's top choice, from its ``(N, classes)`` probabilities."""
    top = probabilities.argmax(-1)
    return {name: float((top == i).float().mean()) for i, name in enumerate(names)}


def object_frequency(bundle: GANBundle, judge: Any, *, num_samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """How often each object is the toy judge's top object among ``num_samples`` samples (latents of ``seed``)."""
    judge = _judge(judge)
    return top_class_frequency(
        judge.probabilities(bundle.sample(num_samples, seed=seed))["object"], judge.heads["object"]
    )


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


def _judge(judge: Any):
    if isinstance(judge, str):
        from eval.judges import load_judge

        return load_judge(judge)
    return judge
