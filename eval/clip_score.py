"""CLIP score of images against their prompts, in the two conventions papers use, with the backbone named.

Two conventions are in use and they are not comparable:

- ``"torchmetrics"``: torchmetrics' ``CLIPScore``, ``max(100 * mean cosine, 0)`` (the clip at 0 applies to the mean
  over samples, as torchmetrics computes it). Its default backbone is ViT-L/14.
- ``"advunlearn"``: the plain mean cosine similarity between image and prompt embeddings, which is what AdvUnlearn
  and the UnlearnDiffAtk benchmark report as "CLIP" (``logits_per_image / 100`` with ``openai/clip-vit-base-patch32``,
  whose logit scale is exactly 100).

Both come from one pass of torchmetrics' ``CLIPScore``: the torchmetrics value is its ``compute()``, the AdvUnlearn
value is its accumulated score sum divided by the sample count and by 100 (before the clip at 0). torchmetrics 1.9
only takes hub names containing "openai"/"jinaai"/"zer0int" or a callable, and with transformers 5 its feature
calls crash (torchmetrics issue 3407), so every backbone goes through the callable route with a thin adapter whose
``get_image_features`` / ``get_text_features`` return pooled tensors.

Backbones (``backbone=``): any that :func:`pipelines.clip.load_clip` takes (the toy CLIP, a transformers folder, a
cached hub id, ``open_clip:ARCH:WEIGHTS``).

Images are floats in [0, 1] ``(N, 3, H, W)`` (or PIL images); they are quantised to uint8 with rounding, as a saved
PNG would be, before the backbone's processor rescales and normalises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

# The backbones live in pipelines (a GAN method trains through CLIP too); re-exported for eval's callers.
from pipelines.clip import HUB_ALIASES, ClipBackbone, load_clip
from pipelines.errors import ConfigError

CONVENTIONS: dict[str, str] = {
    "torchmetrics": "torchmetrics CLIPScore: max(100 x mean cosine(image, prompt), 0)",
    "advunlearn": "AdvUnlearn / UnlearnDiffAtk: mean cosine(image, prompt), i.e. logits / 100 for OpenAI CLIP",
}

__all__ = [
    "CONVENTIONS",
    "HUB_ALIASES",
    "ClipBackbone",
    "ClipScoreResult",
    "backbone_note",
    "clip_score",
    "clip_scores",
    "load_clip",
]


@dataclass
class ClipScoreResult:
    """One CLIP score and what it is.

    Args:
        value (`float`): the score (0-100 scale for ``"torchmetrics"``, a cosine in [-1, 1] for ``"advunlearn"``).
        convention (`str`): ``"torchmetrics"`` or ``"advunlearn"`` (see :data:`CONVENTIONS`).
        backbone (`str`): the CLIP model that embedded images and prompts.
        num_samples (`int`): image-prompt pairs averaged.
        definition (`str`): the formula, for reports.
    """

    value: float
    convention: str
    backbone: str
    num_samples: int
    definition: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"CLIP {self.value:.4g} ({self.convention}; backbone {self.backbone}; {self.num_samples} samples)"


# ---------------------------------------------------------------- scores


def _as_uint8_list(images: Any) -> list[torch.Tensor]:
    from .fid import as_image_batch

    batch = as_image_batch(images)
    # Round (not truncate) to the 8-bit values a saved PNG would hold; processors then rescale by 1/255.
    return list((batch * 255).round().to(torch.uint8))


@torch.no_grad()
def clip_scores(
    images: Any,
    prompts: Sequence[str],
    *,
    backbone: str | ClipBackbone = "toy",
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, ClipScoreResult]:
    """CLIP score of each image against its prompt, in both conventions, from one pass.

    Args:
        images: floats in [0, 1] ``(N, 3, H, W)``, or PIL images.
        prompts (`Sequence[str]`): one prompt per image.
        backbone: see :func:`load_clip`.
        batch_size (`int`, defaults to 64): image-prompt pairs per forward pass.
        device: where to run the model (defaults to where the backbone is).

    Returns:
        ``{"torchmetrics": ClipScoreResult, "advunlearn": ClipScoreResult}``.
    """
    from torchmetrics.multimodal.clip_score import CLIPScore

    pixels = _as_uint8_list(images)
    prompts = [str(p) for p in prompts]
    if len(pixels) != len(prompts):
        raise ConfigError(f"give one prompt per image: {len(pixels)} images but {len(prompts)} prompts")
    if not prompts:
        raise ConfigError("no images to score")
    clip = load_clip(backbone, device=device or "cpu")
    if device is not None:
        clip.model.to(device)
    target = clip.device
    metric = CLIPScore(model_name_or_path=lambda: (clip.model, clip.processor))
    for start in range(0, len(prompts), batch_size):
        chunk = [p.to(target) for p in pixels[start : start + batch_size]]
        metric.update(chunk, prompts[start : start + batch_size])
    count = int(metric.n_samples)
    # metric.score holds the sum of 100 * cosine; the AdvUnlearn convention is the unclipped mean cosine.
    mean_cosine = float(metric.score) / count / 100
    return {
        "torchmetrics": ClipScoreResult(
            float(metric.compute()), "torchmetrics", clip.name, count, CONVENTIONS["torchmetrics"]
        ),
        "advunlearn": ClipScoreResult(mean_cosine, "advunlearn", clip.name, count, CONVENTIONS["advunlearn"]),
    }


def clip_score(
    images: Any,
    prompts: Sequence[str],
    *,
    backbone: str | ClipBackbone = "toy",
    convention: str = "torchmetrics",
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> ClipScoreResult:
    """CLIP score of each image against its prompt in one convention.

    Args:
        images, prompts, backbone, batch_size, device: as in :func:`clip_scores`.
        convention (`str`, defaults to `"torchmetrics"`): ``"torchmetrics"`` (``max(100 * mean cosine, 0)``) or
            ``"advunlearn"`` (mean cosine, as AdvUnlearn reports with ViT-B/32).

    Example:

    ```python
    >>> from eval.clip_score import clip_score
    >>> clip_score(images, prompts, backbone="ViT-B/32", convention="advunlearn").value
    0.31
    ```
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown CLIP score convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    return clip_scores(images, prompts, backbone=backbone, batch_size=batch_size, device=device)[convention]


def backbone_note(backbone_name: str) -> str:
    """Which published numbers a backbone's scores may be compared with."""
    if backbone_name == "openai/clip-vit-base-patch32":
        return "ViT-B/32: the AdvUnlearn / UnlearnDiffAtk benchmark backbone"
    if backbone_name == "openai/clip-vit-large-patch14":
        return "ViT-L/14: torchmetrics' default backbone"
    if backbone_name.startswith("toy"):
        return "the toy world's CLIP: comparable only within the toy world"
    return "compare only with scores from the same backbone"
