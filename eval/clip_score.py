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

Backbones (``backbone=``):

- ``"toy"``: the toy world's CLIP (a ``transformers.CLIPModel`` in ``pipelines/toy/assets/clip``).
- a local folder holding a transformers CLIP (``config.json`` + weights + processor files).
- a hub id already in the local Hugging Face cache (``"openai/clip-vit-base-patch32"``; aliases ``"ViT-B/32"``,
  ``"ViT-L/14"``); nothing is downloaded.
- ``"open_clip:ARCH:WEIGHTS"``: an open_clip model with a local weights file, or a pretrained tag whose weights
  are already in the local Hugging Face cache (``"open_clip:ViT-B-32:openai"``).

Images are floats in [0, 1] ``(N, 3, H, W)`` (or PIL images); they are quantised to uint8 with rounding, as a saved
PNG would be, before the backbone's processor rescales and normalises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from pipelines.errors import ConfigError, MissingDependencyError, MissingWeightsError

CONVENTIONS: dict[str, str] = {
    "torchmetrics": "torchmetrics CLIPScore: max(100 x mean cosine(image, prompt), 0)",
    "advunlearn": "AdvUnlearn / UnlearnDiffAtk: mean cosine(image, prompt), i.e. logits / 100 for OpenAI CLIP",
}
HUB_ALIASES = {
    "vit-b/32": "openai/clip-vit-base-patch32",
    "vit-b/16": "openai/clip-vit-base-patch16",
    "vit-l/14": "openai/clip-vit-large-patch14",
}


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


# ---------------------------------------------------------------- backbones


class _PooledClipFeatures(nn.Module):
    """Adapter over a transformers ``CLIPModel`` whose feature methods return the projected, pooled tensors.

    transformers 5 returns a ``BaseModelOutputWithPooling`` from ``get_image_features`` / ``get_text_features``
    (the projection is in ``pooler_output``); torchmetrics 1.9 expects a tensor.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config  # torchmetrics reads text_config.max_position_embeddings to truncate captions

    @staticmethod
    def _pooled(output: Any) -> torch.Tensor:
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._pooled(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


class _OpenClipFeatures(nn.Module):
    """Adapter giving an open_clip model the two feature methods torchmetrics calls."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = SimpleNamespace()  # no text_config: torchmetrics then leaves tokenisation to the processor

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode_text(input_ids)


class _OpenClipProcessor:
    """The processor call torchmetrics makes, served by open_clip's image transform and tokenizer."""

    def __init__(self, preprocess, tokenizer):
        self.preprocess = preprocess
        self.tokenizer = tokenizer

    def __call__(self, text=None, images=None, return_tensors: str = "pt", padding: bool = True, **kwargs):
        from PIL import Image

        if images is not None:
            pils = [Image.fromarray(image.permute(1, 2, 0).cpu().numpy()) for image in images]
            return {"pixel_values": torch.stack([self.preprocess(p) for p in pils])}
        input_ids = self.tokenizer(list(text))
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


@dataclass
class ClipBackbone:
    """A CLIP model ready for :func:`clip_score`: a feature adapter, its processor and its name.

    Build one with :func:`load_clip`, or wrap a model you already hold with :meth:`from_transformers`.
    """

    model: nn.Module
    processor: Any
    name: str

    @classmethod
    def from_transformers(cls, model: nn.Module, processor: Any, name: str) -> ClipBackbone:
        """Wrap a ``transformers.CLIPModel`` and its ``CLIPProcessor``."""
        return cls(_PooledClipFeatures(model.eval().requires_grad_(False)), processor, name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


_CACHE: dict[tuple[str, str], ClipBackbone] = {}


def load_clip(backbone: str | ClipBackbone = "toy", *, device: str | torch.device = "cpu") -> ClipBackbone:
    """Load a CLIP backbone without touching the network (cached per name and device).

    Args:
        backbone (`str` or `ClipBackbone`, defaults to `"toy"`): ``"toy"``, a local transformers CLIP folder, a
            cached hub id (or alias ``"ViT-B/32"``, ``"ViT-L/14"``), or ``"open_clip:ARCH:WEIGHTS"``.
        device: where to put the model.

    Raises:
        MissingWeightsError: the weights are not on disk (the message says where to put them).
    """
    if isinstance(backbone, ClipBackbone):
        return backbone
    spec = backbone.strip()
    key = (spec, str(device))
    if key not in _CACHE:
        if spec.lower().startswith("open_clip:"):
            loaded = _load_open_clip(spec)
        else:
            loaded = _load_transformers_clip(spec)
        loaded.model.to(device)
        _CACHE[key] = loaded
    return _CACHE[key]


def _load_transformers_clip(spec: str) -> ClipBackbone:
    from transformers import CLIPModel, CLIPProcessor

    from pipelines.sd import check_tokenizer, toy_path

    if spec == "toy":
        source, name = toy_path("clip"), "toy (toy-world CLIP)"
    elif Path(spec).expanduser().is_dir():
        source, name = Path(spec).expanduser(), str(Path(spec).expanduser().resolve())
    else:
        repo = HUB_ALIASES.get(spec.lower(), spec)
        if repo.count("/") != 1 or Path(repo).exists():
            raise ConfigError(f"CLIP backbone {spec!r} is not 'toy', a folder, a hub id, or 'open_clip:ARCH:WEIGHTS'")
        source, name = repo, repo
    if isinstance(source, Path):
        from pipelines.checks import check_weights_folder, loading

        check_weights_folder(source, what="CLIP")
        with loading(source, what="CLIP model", expected="a transformers CLIPModel folder with its processor"):
            model = CLIPModel.from_pretrained(source, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
        check_tokenizer(processor.tokenizer, f"CLIP {spec!r}")
        return ClipBackbone.from_transformers(model, processor, name)
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True)
        processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
    except OSError as err:
        raise MissingWeightsError(
            f"CLIP {spec!r} is not on disk and nothing is downloaded here; on a connected machine run "
            f"'huggingface-cli download {source}' (or save it with save_pretrained) and pass the folder"
        ) from err
    check_tokenizer(processor.tokenizer, f"CLIP {spec!r}")
    return ClipBackbone.from_transformers(model, processor, name)


def _load_open_clip(spec: str) -> ClipBackbone:
    try:
        import open_clip
    except ImportError as err:
        raise MissingDependencyError(
            "open_clip backbones need open-clip-torch; install it with: pip install 'erasure-studio[eval]'"
        ) from err
    parts = spec.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ConfigError("write an open_clip backbone as 'open_clip:ARCH:WEIGHTS', e.g. 'open_clip:ViT-B-32:openai'")
    arch, weights = parts[1], parts[2]
    if arch not in open_clip.list_models():
        raise ConfigError(f"open_clip has no architecture {arch!r}; see open_clip.list_models()")
    options: dict[str, Any] = {}
    path = Path(weights).expanduser()
    if not path.is_file():
        # A pretrained tag: find its weights in the local HF cache and apply the tag's settings (quick_gelu, mean,
        # std) ourselves, because open_clip only applies them when it resolves the tag (and then it may download).
        config = open_clip.pretrained.get_pretrained_cfg(arch, weights)
        if not config:
            raise MissingWeightsError(f"open_clip weights {weights!r} for {arch} are neither a file nor a known tag")
        path = _cached_open_clip_file(config, arch, weights)
        options = {
            "force_quick_gelu": bool(config.get("quick_gelu", False)),
            "image_mean": config.get("mean"),
            "image_std": config.get("std"),
        }
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(path), **options)
    model.eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(arch)
    return ClipBackbone(
        _OpenClipFeatures(model), _OpenClipProcessor(preprocess, tokenizer), f"open_clip {arch} {weights}"
    )


def _cached_open_clip_file(config: dict[str, Any], arch: str, tag: str) -> Path:
    from huggingface_hub import hf_hub_download

    repo = (config.get("hf_hub") or "").strip("/")
    if repo:
        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            try:
                return Path(hf_hub_download(repo, filename, local_files_only=True))
            except Exception:  # not in the cache under this name
                continue
    raise MissingWeightsError(
        f"open_clip weights {arch}/{tag} are not in the local Hugging Face cache and nothing is downloaded here; "
        f"on a connected machine run 'huggingface-cli download {repo or '<repo>'}', or pass a weights file as "
        f"'open_clip:{arch}:/path/to/weights'"
    )


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
