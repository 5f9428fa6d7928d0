"""Metrics of GAN unlearning, as Adapt-then-Unlearn reports them (TMLR 2025, §5 of reference/methods.md).

- **PUL**, the percentage of unlearning: ``(N_neg,base − N_neg,erased) / N_neg,base``, where N_neg counts the samples a
  judge says show the concept, both generators sampling the *same* latents (the official
  ``Unlearning_MNIST/eval_multiple_gan.py``). Returned as a fraction in [−∞, 1]; 1 means every negative is gone.
- **Share of each object**: how often each object is the toy judge's top class (the survivors check).

The distance metrics (FD, Ret-FD) need a feature network and live in ``eval.gan_metrics``.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.gan import GANBundle
from pipelines.toy.quality import top_class_frequency


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
        judge: a judge (``pipelines.judge.Judge``; ``eval.load_judge(name)`` gives one by name).
        concept (`str`): the erased concept.
        num_samples (`int`, defaults to 1000): samples per generator.
        seed (`int`, defaults to 0): seed of the shared latents.

    Returns:
        `dict`: ``pul`` (a fraction; NaN when the base drew no negatives), ``negatives_base``, ``negatives_erased``,
        ``num_samples``, ``seed``.
    """
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


def object_frequency(bundle: GANBundle, judge: Any, *, num_samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """How often each object is the toy judge's top object among ``num_samples`` samples (latents of ``seed``)."""
    return top_class_frequency(
        judge.probabilities(bundle.sample(num_samples, seed=seed))["object"], judge.heads["object"]
    )
