"""CLIP backbones: loading any CLIP offline, and embedding images and text with gradients.

A :class:`ClipBackbone` is the one handle on a CLIP model that the studio passes around. It serves two callers:

- ``eval.clip_score`` scores images against prompts through torchmetrics' ``CLIPScore`` (``model`` and
  ``processor`` are the pair torchmetrics expects);
- methods that *train through* CLIP (Text-to-Unlearn) call :meth:`ClipBackbone.encode_images` and
  :meth:`ClipBackbone.encode_text`, which keep the autograd graph: images are resized and normalised with tensor
  operations, not with the processor's PIL path.

Backbones (``load_clip(spec)``):

- ``"toy"``: the toy world's CLIP (a ``transformers.CLIPModel`` in ``pipelines/toy/assets/clip``).
- a local folder holding a transformers CLIP (``config.json`` + weights + processor files).
- a hub id already in the local Hugging Face cache (``"openai/clip-vit-base-patch32"``; aliases ``"ViT-B/32"``,
  ``"ViT-L/14"``); nothing is downloaded.
- ``"open_clip:ARCH:WEIGHTS"``: an open_clip model with a local weights file, or a pretrained tag whose weights
  are already in the local Hugging Face cache (``"open_clip:ViT-B-32:openai"``).

A leading ``"clip:"`` is allowed (``"clip:toy"``, as judges and configs write it). It lives in ``pipelines``
(below ``gan`` and ``eval``) because both a GAN method and the evaluator load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.errors import ConfigError, MissingDependencyError, MissingWeightsError

HUB_ALIASES = {
    "vit-b/32": "openai/clip-vit-base-patch32",
    "vit-b/16": "openai/clip-vit-base-patch16",
    "vit-l/14": "openai/clip-vit-large-patch14",
}


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
    """A CLIP model: a feature adapter, its processor and its name.

    ``model`` / ``processor`` are the pair torchmetrics' ``CLIPScore`` takes (``eval.clip_score``);
    :meth:`encode_images` / :meth:`encode_text` embed with gradients (for methods that train through CLIP).
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

    @property
    def logit_scale(self) -> float:
        """The temperature the backbone learned for its image-text logits, exp(τ) (CLIP's ends at its clamp, 100)."""
        # The adapters hold transformers' CLIPModel or open_clip's CLIP as .model; both keep log τ as logit_scale.
        scale = getattr(getattr(self.model, "model", None), "logit_scale", None)
        return float(scale.exp()) if isinstance(scale, torch.Tensor) else 100.0

    # ------------------------------------------------------------ differentiable embeddings

    def _image_geometry(self) -> tuple[int, list[float], list[float]]:
        """Input side, mean and std of the backbone's image preprocessing."""
        if isinstance(self.processor, _OpenClipProcessor):
            from torchvision.transforms import Normalize

            normalize = next(t for t in self.processor.preprocess.transforms if isinstance(t, Normalize))
            size = self.model.model.visual.image_size
            side = size if isinstance(size, int) else size[0]
            return side, list(normalize.mean), list(normalize.std)
        image_processor = self.processor.image_processor
        crop = getattr(image_processor, "crop_size", None) or {}
        side = crop.get("height") or (image_processor.size or {}).get("shortest_edge")
        return int(side), list(image_processor.image_mean), list(image_processor.image_std)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm CLIP embeddings of images, keeping the autograd graph (for training through CLIP).

        Args:
            images (`torch.Tensor`): floats in [0, 1], ``(N, 3, H, W)``.

        Returns:
            `torch.Tensor`: ``(N, D)``, each row of unit length.

        The processor's path (PIL, uint8) cuts the graph; here the image is resized so that its short side is the
        backbone's input side (bicubic with antialiasing, as the processors resize), centre-cropped, and normalised
        with the backbone's own mean and std.
        """
        side, mean, std = self._image_geometry()
        height, width = images.shape[-2:]
        if (height, width) != (side, side):
            scale = side / min(height, width)
            size = (max(side, round(height * scale)), max(side, round(width * scale)))
            images = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)
            top, left = (images.shape[-2] - side) // 2, (images.shape[-1] - side) // 2
            images = images[..., top : top + side, left : left + side]
        mean_t = images.new_tensor(mean).view(1, -1, 1, 1)
        std_t = images.new_tensor(std).view(1, -1, 1, 1)
        features = self.model.get_image_features((images - mean_t) / std_t)
        return F.normalize(features.float(), dim=-1)

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm CLIP embeddings of prompts (truncated to the text encoder's context, as CLIP does).

        Returns:
            `torch.Tensor`: ``(N, D)``, each row of unit length. Call :meth:`truncated_prompts` first to warn.
        """
        prompts = [str(p) for p in prompts]
        if isinstance(self.processor, _OpenClipProcessor):
            tokens = self.processor(text=prompts)
        else:
            tokens = self.processor.tokenizer(
                prompts, padding=True, truncation=True, max_length=self.context_length, return_tensors="pt"
            )
        input_ids = tokens["input_ids"].to(self.device)
        attention_mask = tokens["attention_mask"].to(self.device)
        features = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(features.float(), dim=-1)

    @property
    def context_length(self) -> int:
        """Tokens the text encoder reads, start and end tokens included (77 for OpenAI's CLIP)."""
        if isinstance(self.processor, _OpenClipProcessor):
            return int(getattr(self.processor.tokenizer, "context_length", 77))
        return int(self.model.config.text_config.max_position_embeddings)

    def truncated_prompts(self, prompts: Sequence[str]) -> list[str]:
        """The prompts that do not fit the text encoder's context (CLIP would silently cut their end)."""
        tokenizer = self.processor.tokenizer
        if isinstance(self.processor, _OpenClipProcessor):
            # open_clip's tokenizers pad and cut to context_length; the BPE underneath gives the raw count.
            encode = getattr(getattr(tokenizer, "tokenizer", tokenizer), "encode", None)
            if encode is None:
                return []
            return [p for p in prompts if len(encode(str(p))) + 2 > self.context_length]
        return [p for p in prompts if len(tokenizer(str(p))["input_ids"]) > self.context_length]


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
    if spec.lower().startswith("clip:"):
        spec = spec[len("clip:") :]
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
    elif spec.startswith((".", "~", "/")) or spec.count("/") > 1 or "\\" in spec:
        raise ConfigError(f"CLIP backbone folder {spec} does not exist; check the path, or use 'toy'")
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
