"""Shared training data: image folders, VAE latents, base-model images cached on disk, retain prompts.

Methods that train on images (SalUn's forget and retain sets, DoCo's anchor images) share these pieces:

- :func:`list_image_folder` and :func:`load_image_file`: a folder of image files with optional HF ``metadata.jsonl``
  captions, each image resized and centre-cropped to the model's resolution.
- :func:`encode_images`: images -> scaled VAE latents (the posterior mean).
- :func:`generate_images_cached`: images that a base model draws for (prompt, seed) pairs, stored as 8-bit PNGs in a
  cache keyed by the model's fingerprint, the prompt, the sampler settings and the seed (:class:`ImageCache`). Fresh
  images are quantised the same way, so a run on cached images trains on the same data as the run that drew them.
- :func:`object_retain_prompts`: "a photo of a <object>" prompts for everyday objects, minus the concept's words.
- :func:`slugify`: a file-name-safe form of a prompt or concept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .artifacts import base_identity
from .errors import ConfigError
from .images import to_uint8
from .sd import generate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# The 243 everyday objects of the "objects" retain set. The list ships as the erasure package's data (pyproject's
# package-data) and is read by path, so that this lower layer never imports ``erasure``.
RETAIN_OBJECTS_FILE = Path(__file__).resolve().parent.parent / "erasure" / "data" / "retain_objects.txt"


def slugify(text: str, limit: int | None = None, *, fallback: str = "empty") -> str:
    """A file-name-safe form of ``text``: lower-case ASCII letters and digits, every other run of characters a hyphen.

    Args:
        text (`str`): a prompt or a concept, e.g. ``"A photo of a nude person"`` (-> ``"a-photo-of-a-nude-person"``).
        limit (`int`, *optional*): keep at most this many characters (after slugifying); no limit by default.
        fallback (`str`, defaults to `"empty"`): what to return when nothing is left (an empty or all-symbol text).

    Returns:
        `str`: never empty when ``fallback`` is not.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit] or fallback


# ---------------------------------------------------------------- image files


def load_image_file(path: str | os.PathLike, resolution: int) -> torch.Tensor:
    """Read an image file as uint8 ``(3, R, R)``: the shorter side resized to R (bicubic), then centre-cropped.

    Args:
        path (`str` or `os.PathLike`): any image file PIL reads; converted to RGB.
        resolution (`int`): R, the model's image size (``unet.config.sample_size * pipe.vae_scale_factor``).
    """
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def list_image_folder(folder: str | os.PathLike, default_prompt: str) -> tuple[list[Path], list[str]]:
    """The image files of a folder (sorted by name) and their captions.

    Args:
        folder (`str` or `os.PathLike`): a folder of ``IMAGE_SUFFIXES`` files, optionally with an HF ``metadata.jsonl``
            whose rows hold ``file_name`` and ``text``.
        default_prompt (`str`): the caption of a file that ``metadata.jsonl`` does not describe.

    Returns:
        `tuple[list[Path], list[str]]`: the files and one caption per file.

    Raises:
        ConfigError: the folder does not exist or holds no images.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"image folder {folder} does not exist; check the path")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    captions: dict[str, str] = {}
    metadata = folder / "metadata.jsonl"
    if metadata.is_file():
        for line in metadata.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                captions[str(row.get("file_name", ""))] = row.get("text", default_prompt)
    return files, [captions.get(f.name, default_prompt) for f in files]


@torch.no_grad()
def encode_images(
    vae,
    images: torch.Tensor,
    *,
    output_device: str | torch.device | None = "cpu",
    output_dtype: torch.dtype | None = torch.float32,
) -> torch.Tensor:
    """Scaled VAE latents of images: the posterior mean times ``vae.config.scaling_factor`` (SD's x0).

    Args:
        vae (`AutoencoderKL`): the pipeline's VAE; the images go to its device and dtype after the [-1, 1] shift.
        images (`torch.Tensor` of shape `(N, 3, H, W)`): floats in [0, 1], or uint8 in [0, 255].
        output_device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): where the latents go; ``None``
            leaves them on the VAE's device.
        output_dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): the latents' dtype; ``None`` keeps the
            VAE's.

    Returns:
        `torch.Tensor` of shape `(N, C, H / f, W / f)`.
    """
    if images.dtype == torch.uint8:
        images = images.float() / 255
    param = next(vae.parameters())
    x = (images * 2 - 1).to(param.device, param.dtype)
    latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    if output_dtype is not None:
        latents = latents.to(output_dtype)
    if output_device is not None:
        latents = latents.to(output_device)
    return latents


# ---------------------------------------------------------------- base-model images, cached on disk


def model_cache_key(fingerprints: Mapping[str, str]) -> str:
    """The cache folder name of a base model: a hash of its UNet, text encoder and VAE fingerprints.

    Args:
        fingerprints (`Mapping[str, str]`): ``pipelines.artifacts.base_identity(pipe)["fingerprints"]``. Other
            entries are ignored, so the key depends only on the components that draw the images.
    """
    parts = {k: fingerprints[k] for k in ("unet", "text_encoder", "vae") if k in fingerprints}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class ImageCache:
    """Generated images on disk, one PNG per (model, prompt, sampler settings, seed).

    Layout: ``<cache_dir>/<model key>/<prompt slug>-<hash of prompt and settings>/<seed>.png``. The model key
    (:func:`model_cache_key`) combines ``pipelines.artifacts.fingerprint`` of the UNet, text encoder and VAE, so
    another model (or an erased one) never reads this model's images.

    Args:
        root (`str` or `os.PathLike`, *optional*): the cache folder; ``None`` caches nothing.
        model_key (`str`): the model's key, :func:`model_cache_key`.
        settings (`dict`): everything besides the prompt and seed that changes the images (JSON-serialisable).
    """

    def __init__(self, root: str | os.PathLike | None, model_key: str, settings: dict[str, Any]):
        self.root = Path(root).expanduser() / model_key if root else None
        self.settings = settings

    def path(self, prompt: str, seed: int) -> Path | None:
        """Where the image of ``prompt`` at ``seed`` is stored (``None`` without a cache folder)."""
        if self.root is None:
            return None
        key = hashlib.sha256(json.dumps({"prompt": prompt, **self.settings}, sort_keys=True).encode()).hexdigest()
        return self.root / f"{slugify(prompt, 40)}-{key[:16]}" / f"{seed}.png"

    def load(self, prompt: str, seed: int) -> torch.Tensor | None:
        """The cached image as uint8 ``(3, H, W)``, or ``None`` if it is not cached."""
        path = self.path(prompt, seed)
        if path is None or not path.is_file():
            return None
        from PIL import Image

        with Image.open(path) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)

    def store(self, prompt: str, seed: int, image: torch.Tensor) -> None:
        """Write a uint8 ``(3, H, W)`` image (a no-op without a cache folder)."""
        path = self.path(prompt, seed)
        if path is None:
            return
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(partial, format="PNG")
        os.replace(partial, path)  # concurrent runs never see half-written files


@dataclass
class GeneratedImages:
    """What :func:`generate_images_cached` returns.

    Args:
        images (`torch.Tensor` of shape `(N, 3, H, W)`, uint8): one image per (prompt, seed) pair, in order.
        generated (`int`): how many were drawn by the model (the others came from the cache).
    """

    images: torch.Tensor
    generated: int

    @property
    def cached(self) -> int:
        """How many images came from the cache."""
        return len(self.images) - self.generated


def generate_images_cached(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    cache_dir: str | os.PathLike | None = None,
    *,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    batch_size: int = 8,
    model_key: str | None = None,
    sampler: Callable[..., torch.Tensor] | None = None,
) -> GeneratedImages:
    """Images that ``pipe`` draws for (prompt, seed) pairs, read from the cache when there, else drawn and stored.

    Image ``i`` is ``prompts[i]`` drawn from its own generator seeded with ``seeds[i]``, so it does not depend on the
    batch it is drawn in. Every image is quantised to 8 bits, cached or not, so a later run reads the same data.

    Args:
        pipe (`StableDiffusionPipeline`): the model that draws (e.g. a method's frozen base model).
        prompts (`Sequence[str]`), seeds (`Sequence[int]`): one prompt and one seed per image.
        cache_dir (`str` or `os.PathLike`, *optional*): the cache folder (:class:`ImageCache`); ``None`` caches
            nothing.
        num_inference_steps (`int`, defaults to 50), guidance_scale (`float`, defaults to 7.5): the sampler settings.
        batch_size (`int`, defaults to 8): images per sampler call.
        model_key (`str`, *optional*): the model's cache key; computed from ``pipe``'s weights when not given (give
            it to skip that, or to file a half-precision copy's images under the fp32 model).
        sampler (`Callable`, *optional*): draws the images; defaults to :func:`pipelines.sd.generate`, whose
            signature it must have.

    Returns:
        :class:`GeneratedImages`: uint8 images ``(N, 3, H, W)`` on the CPU and how many were drawn.
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"give one seed per prompt: {len(prompts)} prompts, {len(seeds)} seeds")
    resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
    if not prompts:
        return GeneratedImages(torch.empty(0, 3, resolution, resolution, dtype=torch.uint8), 0)
    cache = None
    if cache_dir:
        if model_key is None:
            model_key = model_cache_key(base_identity(pipe)["fingerprints"])
        settings = {
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "scheduler": type(pipe.scheduler).__name__,
            "resolution": resolution,
            "dtype": str(next(pipe.unet.parameters()).dtype),
        }
        cache = ImageCache(cache_dir, model_key, settings)
    found = [cache.load(p, s) if cache else None for p, s in zip(prompts, seeds)]
    missing = [i for i, image in enumerate(found) if image is None]
    if missing:
        fresh = (sampler or generate)(
            pipe,
            [prompts[i] for i in missing],
            seeds=[seeds[i] for i in missing],
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            batch_size=batch_size,
        )
        for i, image in zip(missing, to_uint8(fresh)):
            if cache:
                cache.store(prompts[i], seeds[i], image)
            found[i] = image
    return GeneratedImages(torch.stack(found), len(missing))


# ---------------------------------------------------------------- retain prompts


def object_retain_prompts(concept: str) -> list[str]:
    """The prompts "a photo of a <object>" for our 243 everyday objects, less those sharing a word with ``concept``.

    Args:
        concept (`str`): the erased concept; several concepts may be given comma-separated.
    """
    text = RETAIN_OBJECTS_FILE.read_text()
    words = {w.lower() for w in concept.replace(",", " ").split()}
    objects = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [f"a photo of a {o}" for o in objects if not words & set(o.lower().split())]
