"""Export an erasure artifact to where people use Stable Diffusion: a merged diffusers folder, a single-file
checkpoint in the original (CompVis/LDM) key layout, or a LoRA.

```python
from pipelines import export

export("runs/esd-star", "exports/esd-star", format="diffusers")                    # from_pretrained folder
export("runs/esd-star", "exports/esd-star.safetensors", format="single-file")      # ComfyUI / A1111 / from_single_file
report = export("runs/esd-star", "exports/esd-star-lora", format="lora", rank=4)   # load_lora_weights folder
print(report.overall_error)
```

- ``diffusers``: the base model with the artifact merged, written with ``save_pretrained`` (safetensors, fp32, fp16 or
  bf16). Loads with ``StableDiffusionPipeline.from_pretrained(folder)``; its ``README.md`` carries the erasure
  manifest.
- ``single-file``: one ``.safetensors`` file in the original Stable Diffusion key layout (``model.diffusion_model.``,
  ``first_stage_model.``, ``cond_stage_model.transformer.``). The UNet and VAE key names are derived from the
  diffusers configs, so any SD v1.x-shaped model maps, and the mapping is the exact inverse of the one diffusers
  applies when loading (``diffusers/loaders/single_file_utils.py``: ``convert_ldm_unet_checkpoint``,
  ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``). A model of the standard SD v1.x sizes loads with
  ``StableDiffusionPipeline.from_single_file(file)``; one of other sizes (the toy model) needs the base model's
  diffusers folder for its configs: ``from_single_file(file, config="path/to/base/folder")``.
- ``lora``: the erasure's weight delta ``W_erased - W_base`` of every changed ``Linear``/``Conv2d`` layer, truncated to
  ``rank`` by SVD (``delta ~= B @ A``, ``B = U sqrt(S)``, ``A = sqrt(S) V^T``), saved as
  ``pytorch_lora_weights.safetensors`` in the peft/diffusers layout that ``pipe.load_lora_weights(folder)`` reads
  (``unet.<module>.lora_A.weight``, ``text_encoder.text_model.<module>.lora_A.weight``), or in the kohya layout
  (``lora_unet_<module>.lora_down.weight``, ``.alpha``) that ComfyUI and A1111 read. ``alpha == rank``, so the LoRA
  scale is the erasure's strength: 0 is the base model, 1 the (approximated) erasure, above 1 an amplified one. The
  report gives each layer's relative approximation error ``||delta - B A||_F / ||delta||_F`` and the overall one;
  changed tensors that a LoRA cannot hold (biases, norms, embeddings) are listed in ``uncovered``.

Every export is written under a temporary name and moved into place at the end (``os.replace``); an existing output
path is refused unless ``overwrite=True``. Nothing is unpickled: tensors are read and written with safetensors only.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from .artifacts import apply_artifact, read_manifest
from .errors import ArtifactError, ConfigError

ExportFormat = Literal["diffusers", "single-file", "lora"]
EXPORT_FORMATS: tuple[str, ...] = ("diffusers", "single-file", "lora")
LORA_LAYOUTS: tuple[str, ...] = ("diffusers", "kohya")
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
EXPORT_MANIFEST = "erasure_export.json"

# Which component a LoRA of each artifact kind adapts.
_LORA_COMPONENT = {"unet_partial": "unet", "unet": "unet", "text_encoder": "text_encoder"}

# Original (LDM) key prefixes of a Stable Diffusion v1.x single-file checkpoint.
LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_CLIP_PREFIX = "cond_stage_model.transformer."


@dataclass
class ExportReport:
    """What :func:`export` wrote.

    Args:
        format (`str`): ``"diffusers"``, ``"single-file"`` or ``"lora"``.
        output (`str`): the folder (diffusers, lora) or file (single-file) written.
        source (`str`): the artifact folder exported.
        method (`str`), concept (`str`), artifact_kind (`str`): from the artifact's manifest.
        dtype (`str`): the dtype of the exported tensors.
        bytes (`int`): the size of the exported weights on disk.
        rank (`int`, *optional*): the LoRA rank.
        lora_layout (`str`, *optional*): ``"diffusers"`` or ``"kohya"``.
        component (`str`, *optional*): the component the LoRA adapts (``unet`` or ``text_encoder``).
        layers (`list[dict]`): per LoRA layer: ``name``, ``shape``, ``rank``, ``max_rank``, ``relative_error``.
        overall_error (`float`, *optional*): ``sqrt(sum ||delta - BA||^2) / sqrt(sum ||delta||^2)`` over the layers.
        uncovered (`list[dict]`): changed tensors a LoRA cannot hold: ``name`` and ``relative_change``.
    """

    format: str
    output: str
    source: str
    method: str
    concept: str
    artifact_kind: str
    dtype: str
    bytes: int = 0
    rank: int | None = None
    lora_layout: str | None = None
    component: str | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    overall_error: float | None = None
    uncovered: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(
    artifact: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: ExportFormat = "diffusers",
    base: Any = None,
    dtype: str = "fp32",
    rank: int = 4,
    lora_layout: str = "diffusers",
    overwrite: bool = False,
    allow_other_base: bool = False,
    scorecard: str | os.PathLike | dict[str, Any] | None = None,
    callback: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> ExportReport:
    """Export an erasure artifact as a merged diffusers folder, a single-file checkpoint or a LoRA.

    Args:
        artifact (`str` or `os.PathLike`): the artifact folder (``erasure.json``).
        output (`str` or `os.PathLike`): a folder for ``diffusers`` and ``lora``, a ``.safetensors`` file for
            ``single-file`` (its model card is written beside it, with ``.md`` for ``.safetensors``).
        format (`str`, defaults to `"diffusers"`): ``"diffusers"``, ``"single-file"`` or ``"lora"``.
        base (*optional*): the base model, a loaded ``StableDiffusionPipeline`` or a name for ``load_sd``; defaults to
            the base model the manifest names.
        dtype (`str`, defaults to `"fp32"`): ``"fp32"``, ``"fp16"`` or ``"bf16"``, the dtype of the written tensors.
        rank (`int`, defaults to 4): the LoRA rank (``lora`` only); at most the smaller side of every changed layer.
        lora_layout (`str`, defaults to `"diffusers"`): ``"diffusers"`` (peft keys, ``pipe.load_lora_weights``) or
            ``"kohya"`` (ComfyUI, A1111).
        overwrite (`bool`, defaults to `False`): replace an existing output path.
        allow_other_base (`bool`, defaults to `False`): apply the artifact to a base whose fingerprints differ.
        scorecard (`str`, `os.PathLike` or `dict`, *optional*): a scorecard (``erasure-studio eval``'s
            ``scorecard.json``, or its dict) to put in the model card next to the evaluation the manifest records.
        callback (*optional*): ``callback(step, total, logs)`` as the export proceeds.

    Returns:
        [`ExportReport`]: what was written, with the LoRA's per-layer and overall approximation error.

    Raises:
        ArtifactError: a GAN artifact; a one-step (SFD) artifact to ``single-file`` or ``lora``; an existing output
            path without ``overwrite``.
        ConfigError: an unknown format, dtype or LoRA layout, or a rank outside ``1 .. min(layer shape)``.
    """
    source = Path(artifact)
    output = Path(output)
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of: {', '.join(EXPORT_FORMATS)}")
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if lora_layout not in LORA_LAYOUTS:
        raise ConfigError(f"unknown LoRA layout {lora_layout!r}; choose one of: {', '.join(LORA_LAYOUTS)}")
    if format == "lora" and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ConfigError(f"the LoRA rank must be a whole number of at least 1, not {rank!r}")
    manifest = read_manifest(source)
    if scorecard is not None:
        manifest = {**manifest, "evaluation": {**manifest.get("evaluation", {}), "scorecard": _read_json(scorecard)}}
    kind = manifest["artifact_kind"]
    _check_kind(kind, format)
    if format == "single-file" and output.suffix != ".safetensors":
        raise ConfigError(f"a single-file export is a .safetensors file; name the output {output.name}.safetensors")
    targets = [output, _card_path(output)] if format == "single-file" else [output]
    for target in targets:
        if target.exists() and not overwrite:
            raise ArtifactError(f"output path {target} already exists; choose another path or pass --overwrite")

    report = ExportReport(
        format=format,
        output=str(output),
        source=str(source),
        method=manifest["method"],
        concept=manifest["concept"],
        artifact_kind=kind,
        dtype=dtype,
    )
    total = 3
    _progress(callback, 0, total, "loading the base model")
    base_pipe = _load_base(manifest, base)
    merged = apply_artifact(base_pipe, source, allow_other_base=allow_other_base)
    _progress(callback, 1, total, f"writing the {format} export")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.partial-{os.getpid()}"
    _remove(staging)
    try:
        if format == "diffusers":
            staging.mkdir()
            _pipeline_in_dtype(merged, DTYPES[dtype]).save_pretrained(staging, safe_serialization=True)
            report.bytes = sum(p.stat().st_size for p in staging.rglob("*.safetensors"))
            _write_folder_extras(staging, report, manifest)
        elif format == "single-file":
            state = original_sd_state_dict(merged, dtype=DTYPES[dtype])
            from safetensors.torch import save_file

            metadata = {"format": "pt", "modelspec.title": _title(manifest), "erasure_studio": _compact(manifest)}
            save_file(state, staging, metadata=metadata)
            report.bytes = staging.stat().st_size
        else:
            staging.mkdir()
            component = _LORA_COMPONENT[kind]
            lora, info = extract_lora(
                getattr(base_pipe, component), getattr(merged, component), rank=rank, component=component
            )
            state = lora_state_dict(lora, component=component, rank=rank, layout=lora_layout, dtype=DTYPES[dtype])
            from safetensors.torch import save_file

            save_file(state, staging / LORA_WEIGHT_NAME, metadata={"format": "pt"})
            report.rank, report.lora_layout, report.component = rank, lora_layout, component
            report.layers, report.overall_error, report.uncovered = info["layers"], info["overall"], info["uncovered"]
            report.bytes = (staging / LORA_WEIGHT_NAME).stat().st_size
            _write_folder_extras(staging, report, manifest)
        _progress(callback, 2, total, "moving the export into place")
        for target in targets:
            _remove(target)
        os.replace(staging, output)
    except BaseException:
        _remove(staging)
        raise
    if format == "single-file":
        card = _card_path(output)
        tmp = card.with_name(f".{card.name}.partial-{os.getpid()}")
        tmp.write_text(export_model_card(report, manifest))
        os.replace(tmp, card)
    _progress(callback, total, total, "done")
    return report


# ---------------------------------------------------------------- checks and helpers


def _check_kind(kind: str, format: str) -> None:
    if kind == "gan_generator":
        raise ArtifactError(
            f"a GAN artifact cannot be exported as {format}: these formats are for Stable Diffusion; its generator "
            "is already a plain safetensors file (gan_generator.safetensors)"
        )
    if kind == "generator" and format != "diffusers":
        raise ArtifactError(
            f"a one-step (SFD) artifact cannot be exported as {format}: its generator samples in one step, which no "
            "Stable Diffusion checkpoint loader knows; export it with --format diffusers"
        )
    if kind not in ("unet_partial", "unet", "text_encoder", "generator"):
        raise ArtifactError(f"artifact kind {kind!r} cannot be exported by this version of Erasure Studio")


def _read_json(value: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    path = Path(value)
    if not path.is_file():
        raise ConfigError(
            f"scorecard file {path} does not exist; pass the scorecard.json that erasure-studio eval wrote"
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"scorecard file {path} is not valid JSON ({err})") from err


def _progress(callback, step: int, total: int, stage: str) -> None:
    if callback is not None:
        callback(step, total, {"stage": stage})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _card_path(output: Path) -> Path:
    return output.with_suffix(".md")


def _load_base(manifest: dict[str, Any], base: Any):
    from .sd import load_sd

    if base is None:
        base = manifest.get("base_model", {}).get("name_or_path")
        if not base:
            raise ConfigError("the artifact does not name its base model; pass base= (--base)")
    if isinstance(base, (str, os.PathLike)):
        return load_sd(base)
    return base


def _pipeline_in_dtype(pipe, dtype: torch.dtype):
    """``pipe`` with its weights in ``dtype``: copies of the components that differ, the input left untouched."""
    from .sd import replace_components

    changed = {}
    for name in ("unet", "vae", "text_encoder"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module) and next(module.parameters()).dtype != dtype:
            changed[name] = copy.deepcopy(module).to(dtype)
    if not changed:
        return pipe
    if type(pipe).__name__ == "OneStepPipeline":
        from .one_step import OneStepPipeline

        parts = {n: getattr(pipe, n) for n in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
        parts.update(changed)
        return OneStepPipeline(**parts, init_timestep=pipe.config.init_timestep)
    return replace_components(pipe, **changed)


def _title(manifest: dict[str, Any]) -> str:
    return f"{manifest['method']}: '{manifest['concept']}' erased"


def _compact(manifest: dict[str, Any]) -> str:
    keep = ("method", "concept", "artifact_kind", "config", "base_model", "metrics", "evaluation", "created")
    return json.dumps({k: manifest.get(k) for k in keep}, default=str)


def _write_folder_extras(folder: Path, report: ExportReport, manifest: dict[str, Any]) -> None:
    (folder / "README.md").write_text(export_model_card(report, manifest))
    record = {"export": report.to_dict(), "source_manifest": manifest}
    (folder / EXPORT_MANIFEST).write_text(json.dumps(record, indent=2, default=str))


# ---------------------------------------------------------------- single file: diffusers -> original SD key layout

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _swap_first(rest: str, table: dict[str, str]) -> str:
    """Rename the leading module path of ``rest`` (``"norm1.weight"``) by ``table``."""
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_to_original(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``UNet2DConditionModel`` state dict to the original SD (LDM) layout, without prefix.

    The block numbering comes from ``config`` (``layers_per_block``, the block types), so any SD v1.x-shaped UNet
    maps. It is the exact inverse of diffusers' ``convert_ldm_unet_checkpoint``.
    """
    per_block = int(config["layers_per_block"])
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "down_blocks":
            i, sub, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if sub == "resnets":
                new = f"input_blocks.{1 + i * (per_block + 1) + j}.0.{_swap_first(rest, _UNET_RESNET)}"
            elif sub == "attentions":
                new = f"input_blocks.{1 + i * (per_block + 1) + j}.1.{rest}"
            elif sub == "downsamplers":  # down_blocks.i.downsamplers.0.conv.weight
                new = f"input_blocks.{1 + i * (per_block + 1) + per_block}.0.op.{rest.removeprefix('conv.')}"
            else:
                raise ArtifactError(f"UNet key {key} has no place in the original Stable Diffusion layout")
        elif parts[0] == "mid_block":
            sub, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if sub == "resnets":
                new = f"middle_block.{2 * j}.{_swap_first(rest, _UNET_RESNET)}"
            else:
                new = f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            i, sub, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if sub == "resnets":
                new = f"output_blocks.{i * (per_block + 1) + j}.0.{_swap_first(rest, _UNET_RESNET)}"
            elif sub == "attentions":
                new = f"output_blocks.{i * (per_block + 1) + j}.1.{rest}"
            elif sub == "upsamplers":  # up_blocks.i.upsamplers.0.conv.weight
                slot = 2 if up_has_attention[i] else 1
                new = f"output_blocks.{i * (per_block + 1) + per_block}.{slot}.{rest}"
            else:
                raise ArtifactError(f"UNet key {key} has no place in the original Stable Diffusion layout")
        else:
            new = _swap_first(key, _UNET_TOP)
            if new == key:
                raise ArtifactError(f"UNet key {key} has no place in the original Stable Diffusion layout")
        out[new] = value
    return out


def vae_to_original(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Rename a diffusers ``AutoencoderKL`` state dict to the original SD (LDM) layout, without prefix.

    The exact inverse of diffusers' ``convert_ldm_vae_checkpoint``: the decoder's up blocks run in reverse order in
    the original, and the mid-block attention's linear weights become 1x1 convolutions.
    """
    num_up = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        coder, _, rest = key.partition(".")
        parts = rest.split(".")
        if coder in ("encoder", "decoder") and parts[0] in ("down_blocks", "up_blocks"):
            i, sub = int(parts[1]), parts[2]
            name = "down" if parts[0] == "down_blocks" else "up"
            index = i if name == "down" else num_up - 1 - i
            tail = ".".join(parts[4:])
            if sub == "resnets":
                tail = _swap_first(tail, {"conv_shortcut": "nin_shortcut"})
                new = f"{coder}.{name}.{index}.block.{parts[3]}.{tail}"
            elif sub in ("downsamplers", "upsamplers"):
                new = f"{coder}.{name}.{index}.{'downsample' if name == 'down' else 'upsample'}.{tail}"
            else:
                raise ArtifactError(f"VAE key {key} has no place in the original Stable Diffusion layout")
        elif coder in ("encoder", "decoder") and parts[0] == "mid_block":
            sub, j, tail = parts[1], int(parts[2]), ".".join(parts[3:])
            if sub == "resnets":
                new = f"{coder}.mid.block_{j + 1}.{_swap_first(tail, {'conv_shortcut': 'nin_shortcut'})}"
            else:
                new = f"{coder}.mid.attn_1.{_swap_first(tail, _VAE_ATTENTION)}"
                if value.ndim == 2:  # the original's attention projections are 1x1 convolutions
                    value = value[:, :, None, None]
        elif coder in ("encoder", "decoder") and parts[0] == "conv_norm_out":
            new = f"{coder}.norm_out.{'.'.join(parts[1:])}"
        else:
            new = key
        out[new] = value
    return out


def text_encoder_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``CLIPTextModel`` state dict in the original SD v1 layout (``text_model.`` names, without the SD prefix)."""
    return {(k if k.startswith("text_model.") else f"text_model.{k}"): v for k, v in state.items()}


def original_sd_state_dict(pipe, *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The UNet, VAE and text encoder of a ``StableDiffusionPipeline`` as one original-layout SD v1.x state dict.

    Args:
        pipe: a ``StableDiffusionPipeline`` (SD v1.x architecture, a CLIP text encoder).
        dtype (`torch.dtype`, *optional*): cast floating-point tensors to this dtype.

    Returns:
        `dict[str, torch.Tensor]`: contiguous CPU tensors keyed ``model.diffusion_model.*``, ``first_stage_model.*``
        and ``cond_stage_model.transformer.text_model.*``, as ``from_single_file``, ComfyUI and A1111 read them.
    """
    state: dict[str, torch.Tensor] = {}
    parts = (
        (LDM_UNET_PREFIX, unet_to_original(pipe.unet.state_dict(), pipe.unet.config)),
        (LDM_VAE_PREFIX, vae_to_original(pipe.vae.state_dict(), pipe.vae.config)),
        (LDM_CLIP_PREFIX, text_encoder_to_original(pipe.text_encoder.state_dict())),
    )
    for prefix, tensors in parts:
        for key, value in tensors.items():
            value = value.detach()
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            state[prefix + key] = value.cpu().contiguous()
    return state


# ---------------------------------------------------------------- LoRA: truncated SVD of the erasure's delta


def extract_lora(
    base: torch.nn.Module, erased: torch.nn.Module, *, rank: int, component: str = "unet"
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """Approximate ``erased - base`` by a rank-``rank`` LoRA per changed ``Linear``/``Conv2d`` weight.

    Args:
        base (`torch.nn.Module`), erased (`torch.nn.Module`): the same architecture before and after erasure.
        rank (`int`): the LoRA rank; at most the smaller side of each changed layer (a conv's input side counts
            its kernel: ``in_channels * kh * kw``).
        component (`str`, defaults to `"unet"`): named in error messages.

    Returns:
        `(lora, info)`: ``lora`` maps a module name to ``(A, B)`` (``A``: ``(rank, in)`` or ``(rank, in, kh, kw)``;
        ``B``: ``(out, rank)`` or ``(out, rank, 1, 1)``); ``info`` holds ``layers`` (per layer ``name``, ``shape``,
        ``rank``, ``max_rank``, ``relative_error``), ``overall`` (the overall relative error) and ``uncovered``
        (changed tensors that are not such weights, with their relative change).
    """
    base_state, erased_state = base.state_dict(), erased.state_dict()
    modules = dict(erased.named_modules())
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    layers: list[dict[str, Any]] = []
    uncovered: list[dict[str, Any]] = []
    err_sq = norm_sq = 0.0
    for key, new in erased_state.items():
        old = base_state[key]
        if not new.is_floating_point() or torch.equal(new, old):
            continue
        delta = new.detach().float().cpu() - old.detach().float().cpu()
        module_name, _, leaf = key.rpartition(".")
        module = modules.get(module_name)
        if leaf != "weight" or not isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            scale = old.detach().float().norm().item()
            uncovered.append({"name": key, "relative_change": delta.norm().item() / max(scale, 1e-12)})
            continue
        matrix = delta.reshape(delta.shape[0], -1)
        max_rank = min(matrix.shape)
        if rank > max_rank:
            raise ConfigError(
                f"LoRA rank {rank} is above the size of {component} layer {module_name} "
                f"(shape {tuple(delta.shape)}, at most rank {max_rank}); choose --rank {max_rank} or less"
            )
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        root = s[:rank].sqrt()
        b = u[:, :rank] * root
        a = root[:, None] * vh[:rank]
        residual = (matrix - b @ a).norm().item()
        total = matrix.norm().item()
        err_sq += residual**2
        norm_sq += total**2
        if delta.ndim == 4:
            a = a.reshape(rank, *delta.shape[1:])
            b = b[:, :, None, None]
        lora[module_name] = (a, b)
        layers.append(
            {
                "name": module_name,
                "shape": list(delta.shape),
                "rank": rank,
                "max_rank": max_rank,
                "relative_error": residual / max(total, 1e-12),
            }
        )
    overall = math.sqrt(err_sq) / math.sqrt(norm_sq) if norm_sq > 0 else 0.0
    return lora, {"layers": layers, "overall": overall, "uncovered": uncovered}


def lora_state_dict(
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    component: str,
    rank: int,
    layout: str = "diffusers",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Key a LoRA (module name -> ``(A, B)``) in diffusers' peft layout or the kohya layout.

    diffusers: ``unet.<module>.lora_A.weight`` / ``lora_B.weight``, and ``text_encoder.text_model.<module>...`` for a
    CLIP text encoder (the names of every transformers version). kohya: ``lora_unet_<module_with_underscores>`` or
    ``lora_te_text_model_<...>`` with ``.lora_down.weight``, ``.lora_up.weight`` and ``.alpha`` (= ``rank``, scale 1).
    """
    out: dict[str, torch.Tensor] = {}
    for name, (a, b) in lora.items():
        if component == "text_encoder" and not name.startswith("text_model."):
            name = f"text_model.{name}"
        a, b = a.to(dtype).contiguous(), b.to(dtype).contiguous()
        if layout == "diffusers":
            out[f"{component}.{name}.lora_A.weight"] = a
            out[f"{component}.{name}.lora_B.weight"] = b
        else:
            prefix = "lora_unet_" if component == "unet" else "lora_te_"
            stem = prefix + name.replace(".", "_")
            out[f"{stem}.lora_down.weight"] = a
            out[f"{stem}.lora_up.weight"] = b
            out[f"{stem}.alpha"] = torch.tensor(float(rank), dtype=dtype)
    return out


# ---------------------------------------------------------------- model card


def export_model_card(report: ExportReport, manifest: dict[str, Any]) -> str:
    """A diffusers-style model card for an export: what it is, how to load it, its source and scorecard numbers."""
    base = manifest.get("base_model", {}).get("name_or_path") or "unknown"
    out = Path(report.output).name
    lines = [
        "---",
        "library_name: diffusers",
        f"base_model: {base}",
        "tags:",
        "- erasure-studio",
        "- concept-erasure",
        f"- {manifest['method']}",
    ]
    lines += ["- lora", "---"] if report.format == "lora" else ["---"]
    lines += [
        "",
        f"# {_title(manifest)} ({report.format} export)",
        "",
        f"Exported by Erasure Studio from the artifact `{Path(report.source).name}` (method `{manifest['method']}`, "
        f"artifact kind `{report.artifact_kind}`, base model `{base}`), tensors in {report.dtype}, "
        f"{report.bytes / 2**20:.2f} MiB.",
        "",
        "## Use",
        "",
        "```python",
        "from diffusers import StableDiffusionPipeline",
        "",
    ]
    if report.format == "diffusers":
        lines += [f'pipe = StableDiffusionPipeline.from_pretrained("{out}")', "```", ""]
        lines += ["The base model with the erasure merged into its weights: a plain diffusers folder.", ""]
    elif report.format == "single-file":
        lines += [
            f'pipe = StableDiffusionPipeline.from_single_file("{out}")',
            '# a model of non-standard sizes (e.g. the toy one): config="path/to/the/base/diffusers/folder"',
            "```",
            "",
            "One checkpoint in the original Stable Diffusion key layout, for `from_single_file`, ComfyUI and A1111.",
            "",
        ]
    else:
        lines += [
            f'pipe = StableDiffusionPipeline.from_pretrained("{base}")',
            f'pipe.load_lora_weights("{out}", adapter_name="erasure")',
            'pipe.set_adapters(["erasure"], adapter_weights=[1.0])  # the erasure strength: 0 off, 1 full, 1.5 more',
            "```",
            "",
            f"A rank-{report.rank} LoRA ({report.lora_layout} layout) of the {report.component}: the truncated SVD of "
            f"the erasure's weight delta over {len(report.layers)} changed layers, overall relative error "
            f"{report.overall_error:.4f}. The LoRA scale sets the erasure's strength.",
            "",
        ]
        if report.uncovered:
            lines += [
                f"{len(report.uncovered)} changed tensors (biases, norms, embeddings) are not in the LoRA; the "
                f"largest relative change among them is {max(u['relative_change'] for u in report.uncovered):.2e}.",
                "",
            ]
        lines += ["| layer | shape | rank | relative error |", "|---|---|---|---|"]
        lines += [
            f"| {x['name']} | {tuple(x['shape'])} | {x['rank']} | {x['relative_error']:.4f} |" for x in report.layers
        ]
        lines += [""]
    lines += ["## Source artifact", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in manifest.get("config", {}).items()]
    if manifest.get("metrics"):
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in manifest["metrics"].items()]
    if manifest.get("evaluation"):
        lines += ["", "## Scorecard", "", "```json", json.dumps(manifest["evaluation"], indent=2), "```"]
    lines += ["", "## Erasure manifest", "", "```json", json.dumps(manifest, indent=2, default=str), "```", ""]
    return "\n".join(lines)
