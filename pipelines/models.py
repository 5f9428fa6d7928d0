"""One loader for every model the studio takes: :func:`open_model`.

The CLI, the studio, the scorecard, the benchmarks and the tests all turn "a name, a folder, a file or an artifact"
into a model here, so that every surface accepts the same inputs and fails with the same one-line errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch

from .errors import ConfigError

ModelType = Literal["stable_diffusion", "stylegan2"]
MODEL_TYPES: tuple[str, ...] = ("stable_diffusion", "stylegan2")
_GAN_SUFFIXES = (".pt", ".pth")


def is_model(obj: Any) -> bool:
    """True for an already loaded model (a diffusers pipeline or a GAN bundle) rather than a name or path."""
    return not isinstance(obj, (str, os.PathLike))


def guess_model_type(name_or_path: str | os.PathLike) -> ModelType:
    """``stylegan2`` for what only a StyleGAN2 loader reads (a rosinality ``.pt``, a GAN bundle folder), else
    ``stable_diffusion``. ``"toy"`` means the toy Stable Diffusion; pass ``model_type`` for the toy GAN."""
    path = Path(name_or_path).expanduser()
    if path.suffix in _GAN_SUFFIXES:
        return "stylegan2"
    if path.is_dir() and (path / "generator.safetensors").is_file() and not (path / "model_index.json").exists():
        return "stylegan2"
    return "stable_diffusion"


def open_model(
    name_or_path_or_artifact: Any,
    *,
    model_type: ModelType | None = None,
    base: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    revision: str | None = None,
    allow_other_base: bool = False,
):
    """A model from a name, a folder, a file or an artifact folder.

    Args:
        name_or_path_or_artifact: ``"toy"``, a diffusers folder, a ``.safetensors``/``.ckpt`` file, a cached hub id,
            a StyleGAN2 checkpoint or bundle folder, an artifact folder (one with ``erasure.json``), or a model that is
            already loaded (returned as it is).
        model_type (`str`, *optional*): ``"stable_diffusion"`` or ``"stylegan2"``; guessed from the path when not
            given (``"toy"`` is the toy Stable Diffusion). An artifact knows its own type.
        base (*optional*): for an artifact, the base model to apply it to (a loaded model or a name); defaults to
            the base model its manifest names.
        device (`str` or `torch.device`, *optional*): where the model goes (CPU by default).
        dtype (`torch.dtype`, *optional*): weights dtype of a Stable Diffusion model (fp32 by default).
        revision (`str`, *optional*): hub revision of a Stable Diffusion model.
        allow_other_base (`bool`, defaults to `False`): apply an artifact to a base whose fingerprints differ.

    Returns:
        A ``StableDiffusionPipeline`` or a ``GANBundle`` (for an artifact: the base with the erased part in).

    Raises:
        ModelNotFoundError: nothing loadable is at the path.
        ArtifactError: the artifact is tampered with, from another format version, or does not fit its base.
        ConfigError: an unknown ``model_type``, or an artifact that does not name its base model.
    """
    if is_model(name_or_path_or_artifact):
        return name_or_path_or_artifact
    if model_type is not None and model_type not in MODEL_TYPES:
        raise ConfigError(f"unknown model type {model_type!r}; choose one of: {', '.join(MODEL_TYPES)}")
    from .artifacts import MANIFEST, apply_artifact, read_manifest

    path = Path(name_or_path_or_artifact).expanduser()
    if path.is_dir() and (path / MANIFEST).exists():
        manifest = read_manifest(path)
        artifact_type: ModelType = "stylegan2" if manifest["sampler"] == "stylegan2" else "stable_diffusion"
        if base is None:
            base = manifest["base_model"].get("name_or_path")
            if not base:
                raise ConfigError(f"artifact {path} does not name its base model; pass base= (--base)")
        base_model = open_model(base, model_type=artifact_type, device=device, dtype=dtype, revision=revision)
        return apply_artifact(base_model, path, allow_other_base=allow_other_base)
    model_type = model_type or guess_model_type(name_or_path_or_artifact)
    if model_type == "stylegan2":
        from .gan import load

        return load(name_or_path_or_artifact, device=device)
    from .sd import load_sd

    return load_sd(name_or_path_or_artifact, device=device, dtype=dtype, revision=revision)
