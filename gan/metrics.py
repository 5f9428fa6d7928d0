"""Metrics of GAN unlearning, as Adapt-then-Unlearn reports them (TMLR 2025, §5 of reference/methods.md).

- **PUL**, the percentage of unlearning: ``(N_neg,base − N_neg,erased) / N_neg,base``, where N_neg counts the samples a
  judge says show the concept, both generators sampling the *same* latents (the official
  ``Unlearning_MNIST/eval_multiple_gan.py``). Returned as a fraction in [−∞, 1]; 1 means every negative is gone.
- **Share of each object**: how often each object is the toy judge's top class (the survivors check).
- **γ, the degree of unlearning** (Text-to-Unlearn, arXiv 2504.01218): the Wasserstein-1 distance between the
  distributions of CLIP image-text alignment scores (cosine similarities) of the base and the unlearned generator's
  samples for a prompt, on shared latents. 0 means the prompt aligns with the two generators' samples alike; it is
  reported per prompt and with the CLIP backbone named (scores from different backbones do not compare).

The distance metrics (FD, Ret-FD) need a feature network and live in ``eval.gan_metrics``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from scipy.stats import wasserstein_distance

from pipelines.clip import ClipBackbone, load_clip
from pipelines.errors import ConfigError
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


@torch.no_grad()
def clip_alignment(
    bundle: GANBundle, clip: ClipBackbone, prompts: list[str], *, num_samples: int = 1000, seed: int = 0
) -> torch.Tensor:
    """CLIP cosine similarity of each of ``num_samples`` samples (latents of ``seed``) with each prompt, ``(N, P)``."""
    text = clip.encode_text(prompts)
    images = bundle.sample(num_samples, seed=seed)
    scores = [clip.encode_images(chunk.to(clip.device)) @ text.T for chunk in images.split(256)]
    return torch.cat(scores).cpu()


def degree_of_unlearning(
    base: GANBundle,
    erased: GANBundle,
    clip: ClipBackbone | str,
    prompts: list[str],
    *,
    num_samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """γ: the Wasserstein-1 distance between the CLIP alignment scores of base and erased samples, per prompt.

    Args:
        base (`GANBundle`), erased (`GANBundle`): the generators before and after (same latents are drawn).
        clip (`ClipBackbone` or `str`): the backbone that scores (``pipelines.clip.load_clip`` names).
        prompts (`list[str]`): the concept prompts (in-domain) or their paraphrases (out-of-domain).
        num_samples (`int`, defaults to 1000), seed (`int`, defaults to 0): the shared latents.

    Returns:
        `dict`: ``gamma`` (the mean over prompts), ``per_prompt`` (prompt to γ), ``alignment_base`` and
        ``alignment_erased`` (mean cosine per prompt), ``backbone``, ``num_samples``, ``seed``.
    """
    if not prompts:
        raise ConfigError("γ needs at least one prompt that names the concept")
    clip = load_clip(clip) if isinstance(clip, str) else clip
    before = clip_alignment(base, clip, prompts, num_samples=num_samples, seed=seed)
    after = clip_alignment(erased, clip, prompts, num_samples=num_samples, seed=seed)
    per_prompt = {p: float(wasserstein_distance(before[:, i], after[:, i])) for i, p in enumerate(prompts)}
    return {
        "gamma": sum(per_prompt.values()) / len(per_prompt),
        "per_prompt": per_prompt,
        "alignment_base": {p: float(before[:, i].mean()) for i, p in enumerate(prompts)},
        "alignment_erased": {p: float(after[:, i].mean()) for i, p in enumerate(prompts)},
        "backbone": clip.name,
        "num_samples": num_samples,
        "seed": seed,
    }
