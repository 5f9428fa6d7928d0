"""The artifact folder: save, verify, and apply an erasure result.

An artifact is a folder that holds only what changed, plus a manifest:

```
erasure.json               format version, method, config, base model identity, library versions, metrics,
                           and the sha256 of every other file
unet_partial.safetensors   the trained UNet tensors (keys listed in the manifest)     | or
text_encoder/              a whole CLIP text encoder (save_pretrained)                 | or
unet/ | generator/         a whole UNet / one-step generator (save_pretrained)         | or
gan_generator.safetensors  a StyleGAN2 generator
README.md                  a model card
samples.png                a before/after sample grid (when the base model was given)
loss.png                   the loss curve
```

Loading verifies every hash, the format version and that the base model fits, and never unpickles: tensors come
from safetensors only. ``apply_artifact`` returns a stock diffusers pipeline (or a GAN bundle) with the erased part
in, leaving the input untouched.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ArtifactError

if TYPE_CHECKING:
    from erasure.base import EraseResult

FORMAT_VERSION = 1
MANIFEST = "erasure.json"
_COMPONENT_FILES = {
    "unet_partial": "unet_partial.safetensors",
    "text_encoder": "text_encoder",
    "unet": "unet",
    "generator": "generator",
    "gan_generator": "gan_generator.safetensors",
}
# Components an artifact replaces wholesale; every other component of the base must match its fingerprint. A GAN
# generator and a partial UNet are fine-tuned from the base, so the base itself must match.
_REPLACES = {"unet_partial": set(), "text_encoder": {"text_encoder"}, "unet": {"unet"}, "generator": {"unet"}}


# ---------------------------------------------------------------- identity of a base model


def fingerprint(module: torch.nn.Module, samples_per_tensor: int = 2048) -> str:
    """A short, dtype-stable fingerprint of a module's weights.

    Hashes every state-dict key and shape plus an evenly strided sample of each tensor's values rounded to fp16, so
    the same weights loaded in fp32 or fp16 agree while different weights (another checkpoint, an erased model)
    disagree. Cheap even for the SD v1.4 UNet.
    """
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        flat = tensor.detach().reshape(-1)
        if flat.numel() > samples_per_tensor:
            # Integer arithmetic: a float32 linspace rounds past the last index for tensors above 2**24 entries.
            steps = torch.arange(samples_per_tensor, device=flat.device, dtype=torch.int64)
            idx = steps * (flat.numel() - 1) // (samples_per_tensor - 1)
            flat = flat[idx]
        if flat.is_floating_point():
            flat = flat.to(torch.float16)
        digest.update(flat.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_components(model: Any) -> dict[str, torch.nn.Module]:
    """The weight-bearing components of a pipeline or GAN bundle, by name."""
    if hasattr(model, "generator") and hasattr(model, "latent_dim"):  # GANBundle
        return {"generator": model.generator}
    names = ("unet", "text_encoder", "vae", "transformer")
    return {n: getattr(model, n) for n in names if isinstance(getattr(model, n, None), torch.nn.Module)}


def base_identity(model: Any) -> dict[str, Any]:
    """Where a base model came from and the fingerprint of each of its components."""
    source = getattr(model, "studio_source", None) or {}
    return {
        "name_or_path": source.get("name_or_path"),
        "revision": source.get("revision"),
        "fingerprints": {name: fingerprint(m) for name, m in model_components(model).items()},
    }


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("erasure-studio", "torch", "diffusers", "transformers", "safetensors"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- saving


def check_output_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse to write over an existing artifact (or any non-empty folder) unless ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"output path {path} is a file; choose a folder path for the artifact")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        what = "an artifact" if (path / MANIFEST).exists() else "files"
        raise ArtifactError(f"output folder {path} already holds {what}; choose another folder or pass --overwrite")
    return path


def save_artifact(
    result: EraseResult,
    path: str | os.PathLike,
    *,
    base_model: Any = None,
    overwrite: bool = False,
    sample_prompts: list[str] | None = None,
    evaluation: dict[str, Any] | None = None,
    num_validation_images: int | None = None,
    validation_inference_steps: int | None = None,
    callback: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> Path:
    """Write ``result`` as an artifact folder at ``path``. The folder appears complete or not at all.

    Files are written into a hidden sibling folder first and moved into place at the end, so an interrupted save
    leaves no half-written artifact behind.

    Args:
        result (`EraseResult`): what the erasure returned.
        path: the artifact folder.
        base_model (*optional*): the model the run started from; given, a before/after sample grid is written.
        overwrite (`bool`, defaults to `False`): replace an artifact already at ``path``.
        sample_prompts (`list[str]`, *optional*): prompts of the grid (default: the concept twice, then concepts that
            should survive; the diffusers scripts' ``validation_prompts``).
        evaluation (`dict`, *optional*): before/after judge rates to record in the manifest and model card.
        num_validation_images (`int`, *optional*): images per prompt in the grid, 0 to skip it (default sized to the
            model, see ``pipelines.sd.sample_grid_defaults``: 3 on a small model such as the toy one).
        validation_inference_steps (`int`, *optional*): sampler steps of the grid (default sized to the model).
        callback (*optional*): ``callback(step, total, logs)`` as the grid's images are sampled (``step`` images of
            ``total``).
    """
    path = check_output_dir(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        components = _write_components(result, staging)
        for name, tensors in result.extra_tensors.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, staging / f"{name}.safetensors")
        if result.loss_history:
            _write_loss_plot(result, staging / "loss.png")
        if base_model is not None and result.sampler in ("multistep", "one_step"):
            _write_sample_grid(
                result,
                base_model,
                staging / "samples.png",
                sample_prompts,
                num_images=num_validation_images,
                num_inference_steps=validation_inference_steps,
                callback=callback,
            )
        if base_model is not None and result.sampler == "stylegan2" and num_validation_images != 0:
            from .gan import write_before_after

            write_before_after(result, base_model, staging / "samples.png")
        files = {p.relative_to(staging).as_posix(): file_sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        metrics = dict(result.metrics)
        metrics["artifact_bytes"] = sum((staging / f).stat().st_size for f in files)
        manifest = {
            "format_version": FORMAT_VERSION,
            "method": result.method,
            "concept": result.config.concept,
            "artifact_kind": result.artifact_kind,
            "sampler": result.sampler,
            "config": result.config.to_dict(),
            "base_model": result.base,
            "components": components,
            "library_versions": library_versions(),
            "metrics": metrics,
            "evaluation": evaluation or {},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": {},
        }
        (staging / "README.md").write_text(model_card(manifest))
        files["README.md"] = file_sha256(staging / "README.md")
        manifest["files"] = dict(sorted(files.items()))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.metrics["artifact_bytes"] = metrics["artifact_bytes"]
    return path


def _write_components(result: EraseResult, folder: Path) -> dict[str, Any]:
    kind = result.artifact_kind
    if kind == "unet_partial":
        unet = result.components["unet"]
        keys = sorted(result.trained_keys["unet"])
        state = unet.state_dict()
        save_file({k: state[k].detach().contiguous().cpu() for k in keys}, folder / _COMPONENT_FILES[kind])
        return {"unet": {"file": _COMPONENT_FILES[kind], "keys": keys}}
    if kind in ("text_encoder", "unet"):
        module = result.components[kind]
        module.save_pretrained(folder / kind, safe_serialization=True)
        return {kind: {"folder": kind, "class": type(module).__name__}}
    if kind == "generator":
        # A one-step generator: a UNet folder, plus the timestep it samples at (pipelines.one_step).
        module = result.components[kind]
        module.save_pretrained(folder / kind, safe_serialization=True)
        init_timestep = int(result.config.init_timestep)
        return {kind: {"folder": kind, "class": type(module).__name__, "init_timestep": init_timestep}}
    if kind == "gan_generator":
        from .gan import save_generator

        return {"generator": save_generator(result.components["generator"], folder / _COMPONENT_FILES[kind])}
    raise ArtifactError(f"unknown artifact kind {kind!r}")


def _write_loss_plot(result: EraseResult, path: Path) -> None:
    from .images import plot_curves

    keys = [k for k in result.loss_history[0] if k.startswith("loss")]
    series = {k: [h.get(k, float("nan")) for h in result.loss_history] for k in keys}
    plot_curves(series, path, title=f"{result.method}: erasing '{result.config.concept}'")


def default_sample_prompts(concept: str, base_name: str | None) -> list[str]:
    """Prompts for the before/after grid: the concept twice, then concepts that should survive."""
    if base_name == "toy":
        from .toy.world import COLOURS, OBJECTS, canonical, concept_kind, prompt_for

        kind = concept_kind(concept)
        if kind == "object":
            obj = canonical(concept)
            others = [o for o in OBJECTS if o != obj][:3]
            return [prompt_for(obj, "red"), prompt_for(obj, "blue")] + [
                prompt_for(o, c) for o, c in zip(others, COLOURS[1:])
            ]
        if kind == "colour":
            col = canonical(concept)
            others = [c for c in COLOURS if c != col][:3]
            return [prompt_for("circle", col), prompt_for("square", col)] + [
                prompt_for(o, c) for o, c in zip(OBJECTS[2:], others)
            ]
        return [f"a {concept} star", f"a {concept} circle", "a red square", "a blue heart", "a green cross"]
    return [concept, f"a photo of {concept}", "a photo of a dog", "a landscape painting", "a red sports car"]


def _write_sample_grid(
    result: EraseResult,
    base_model: Any,
    path: Path,
    prompts: list[str] | None,
    *,
    num_images: int | None = None,
    num_inference_steps: int | None = None,
    callback: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> None:
    """Before/after grid: ``num_images`` seeds (0, 1, ...) per prompt from the base and the erased model."""
    from .images import before_after_grid
    from .sd import generate, sample_grid_defaults

    default_images, default_steps = sample_grid_defaults(base_model)
    num_images = default_images if num_images is None else num_images
    num_inference_steps = num_inference_steps or default_steps
    if num_images <= 0:
        return
    prompts = prompts or default_sample_prompts(result.config.concept, result.base.get("name_or_path"))
    seeds = list(range(num_images))
    erased = apply_result(base_model, result)
    # A small model (whose default keeps the pipeline's steps) samples each side in one batched call, as fast as ever;
    # a full-size one one prompt per call, so that progress moves where an image takes minutes.
    per_call = len(prompts) if default_steps is None else 1
    total, done = 2 * len(prompts) * num_images, 0
    images: dict[str, list[torch.Tensor]] = {"base": [], "erased": []}
    for role, model in (("base", base_model), ("erased", erased)):
        for start in range(0, len(prompts), per_call):
            group = prompts[start : start + per_call]
            chunk = [p for p in group for _ in seeds]
            images[role].append(
                generate(model, chunk, seeds=seeds * len(group), num_inference_steps=num_inference_steps)
            )
            done += len(chunk)
            if callback is not None:
                callback(done, total, {"model": role})
    title = f"{result.method}: '{result.config.concept}' erased (left: base, right: erased; same seeds)"
    grid = before_after_grid(torch.cat(images["base"]), torch.cat(images["erased"]), prompts, seeds, title=title)
    grid.save(path)


def apply_result(base_model: Any, result: EraseResult):
    """The erased model in memory: ``base_model`` with ``result``'s components in; nothing is copied or saved.

    The in-memory twin of :func:`apply_artifact` for every artifact kind (``EraseResult.apply`` calls it). The base is
    not changed; the returned model shares its untouched components with it.

    Args:
        base_model: the ``StableDiffusionPipeline`` (or ``GANBundle``) the erasure started from.
        result (`EraseResult`): what ``erasure.erase`` returned.

    Returns:
        A stock ``StableDiffusionPipeline`` with the erased component in, a ``pipelines.one_step.OneStepPipeline``
        for a one-step generator (SFD), or a ``GANBundle`` for GAN results.
    """
    from .sd import replace_components

    kind, components = result.artifact_kind, result.components
    if kind == "unet_partial":
        return replace_components(base_model, unet=components["unet"])
    if kind in ("text_encoder", "unet"):
        return replace_components(base_model, **{kind: components[kind]})
    if kind == "generator":
        from .one_step import one_step_from_teacher

        return one_step_from_teacher(base_model, components["generator"], int(result.config.init_timestep))
    if kind == "gan_generator":
        return base_model.with_generator(components["generator"], metadata=dict(base_model.metadata))
    raise ArtifactError(f"cannot apply a {kind!r} result in memory with this version of Erasure Studio")


def model_card(manifest: dict[str, Any]) -> str:
    """A diffusers-style model card for the artifact."""
    config = manifest["config"]
    base = manifest["base_model"].get("name_or_path") or "unknown"
    kind = manifest["artifact_kind"]
    lines = [
        "---",
        "library_name: diffusers" if manifest["sampler"] != "stylegan2" else "library_name: pytorch",
        f"base_model: {base}",
        "tags:",
        "- erasure-studio",
        "- concept-erasure",
        f"- {manifest['method']}",
        "---",
        "",
        f"# {manifest['method']}: '{manifest['concept']}' erased",
        "",
        f"Made with Erasure Studio. Method `{manifest['method']}`, base model `{base}`, artifact kind `{kind}`.",
        "",
        "## Use",
        "",
        "```python",
        "from pipelines import load_sd, apply_artifact",
        "",
        f'pipe = apply_artifact(load_sd("{base}"), "path/to/this/folder")',
        "```",
        "",
    ]
    if kind == "text_encoder":
        lines += [
            "The text encoder is a plain `CLIPTextModel` folder; with diffusers alone:",
            "",
            "```python",
            "from transformers import CLIPTextModel",
            'text_encoder = CLIPTextModel.from_pretrained("path/to/this/folder/text_encoder")',
            "pipe = StableDiffusionPipeline.from_pretrained(BASE, text_encoder=text_encoder)",
            "```",
            "",
        ]
    if kind == "generator":
        lines += [
            "A one-step generator: `apply_artifact` returns a `OneStepPipeline` (`pipe(prompt).images`, one UNet",
            "call).",
            "The generator is a plain `UNet2DConditionModel` folder (`generator/`); it samples at timestep "
            f"{manifest['components']['generator']['init_timestep']} with the base model's VAE and text encoder.",
            "",
        ]
    if kind == "unet_partial":
        lines += [
            "With diffusers alone: `pipe.unet.load_state_dict(safetensors.torch.load_file("
            "'unet_partial.safetensors'), strict=False)` (the keys are listed in `erasure.json`).",
            "",
        ]
    lines += ["## Config", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in config.items()]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in manifest["metrics"].items()]
    if manifest.get("evaluation"):
        lines += ["", "## Evaluation", "", "```json", json.dumps(manifest["evaluation"], indent=2), "```"]
    lines += ["", "![before and after](samples.png)", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- loading


def read_manifest(path: str | os.PathLike, *, verify: bool = True) -> dict[str, Any]:
    """Read ``erasure.json`` and (by default) check the format version and every file's sha256."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"artifact folder {path} does not exist; pass the folder that holds erasure.json")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} has no {MANIFEST}, so it is not an Erasure Studio artifact")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{manifest_path} is not valid JSON ({err}); the artifact is corrupted") from err
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path} does not hold a JSON object; the artifact is corrupted")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} uses artifact format version {version!r}, but this Erasure Studio reads version "
            f"{FORMAT_VERSION}; upgrade or downgrade erasure-studio to match"
        )
    check_manifest_paths(path, manifest)
    if verify:
        for rel, expected in manifest.get("files", {}).items():
            file = path / rel
            if not file.is_file():
                raise ArtifactError(
                    f"artifact file {rel} is missing from {path}; restore it or re-create the artifact"
                )
            if file_sha256(file) != expected:
                raise ArtifactError(
                    f"artifact file {rel} does not match its sha256 in {MANIFEST}: it was modified or corrupted; "
                    "re-create or re-download the artifact"
                )
    return manifest


def check_manifest_paths(path: str | os.PathLike, manifest: Any) -> None:
    """Refuse a manifest that names any path outside its artifact folder, before a single file is opened.

    Every key of ``files`` and every ``file`` / ``folder`` of ``components`` must be a relative path without ``..``
    that resolves (symlinks followed) inside ``path``; the fields the loaders read must have the right types.

    Raises:
        ArtifactError: the manifest is malformed or names a path outside the folder (a tampered artifact).
    """
    from .checks import confined

    path = Path(path)
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path / MANIFEST} does not hold a JSON object; the artifact is corrupted")
    files = manifest.get("files", {})
    components = manifest.get("components", {})
    if not isinstance(files, dict) or not isinstance(components, dict):
        raise ArtifactError(f"{path / MANIFEST} has malformed 'files' or 'components'; the artifact is corrupted")
    for rel in files:
        confined(path, rel, what="file")
    for name, info in components.items():
        if not isinstance(info, dict):
            raise ArtifactError(f"{path / MANIFEST} has a malformed component {name!r}; the artifact is corrupted")
        for key in ("file", "folder"):
            if key in info:
                confined(path, info[key], what=f"{name} {key}")
    for key, kind in (("artifact_kind", str), ("sampler", str), ("base_model", dict)):
        if key in manifest and not isinstance(manifest[key], kind):
            raise ArtifactError(f"{path / MANIFEST} has a malformed {key!r}; the artifact is corrupted")
    for fixed in ("text_encoder", "unet", "generator", *(_COMPONENT_FILES.values())):
        if (path / fixed).exists() or (path / fixed).is_symlink():
            confined(path, fixed, what="component")


def check_base(manifest: dict[str, Any], model: Any, *, allow_other_base: bool = False) -> None:
    """Refuse a base model whose untouched components differ from the ones the artifact was made from."""
    replaced = _REPLACES.get(manifest["artifact_kind"], set())
    expected = manifest.get("base_model", {}).get("fingerprints", {})
    actual = {name: fingerprint(m) for name, m in model_components(model).items() if name in expected}
    for name, want in expected.items():
        if name in replaced:
            continue
        if name not in actual:
            raise ArtifactError(f"the model has no {name}, but the artifact was made for a model with one")
        if actual[name] != want and not allow_other_base:
            base = manifest["base_model"].get("name_or_path")
            raise ArtifactError(
                f"this artifact was made from base model {base!r} and its {name} differs from the one given; "
                "load that base model, or pass allow_other_base=True (--allow_other_base) to apply it anyway"
            )


def apply_artifact(model: Any, path: str | os.PathLike, *, allow_other_base: bool = False):
    """Apply an artifact to a base model and return a new model; ``model`` itself is not changed.

    Args:
        model: the base ``StableDiffusionPipeline`` (or ``GANBundle``) the artifact was made from.
        path: the artifact folder.
        allow_other_base (`bool`, defaults to `False`): apply even if the base model's fingerprints differ
            (e.g. an AdvUnlearn text encoder onto another SD v1.x checkpoint).

    Returns:
        A stock ``StableDiffusionPipeline`` with the erased component in, a ``pipelines.one_step.OneStepPipeline``
        for a one-step generator (SFD), or a ``GANBundle`` for GAN artifacts.
    """
    path = Path(path)
    manifest = read_manifest(path)
    check_base(manifest, model, allow_other_base=allow_other_base)
    kind = manifest["artifact_kind"]
    if kind == "unet_partial":
        return _apply_unet_partial(model, path, manifest)
    if kind == "text_encoder":
        from transformers import CLIPTextModel

        old = model.text_encoder
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True, dtype=old.dtype)
        text_encoder.to(old.device).eval()
        from .sd import replace_components

        return replace_components(model, text_encoder=text_encoder)
    if kind == "unet":
        from diffusers import UNet2DConditionModel

        from .sd import replace_components

        unet = UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True, torch_dtype=model.unet.dtype)
        return replace_components(model, unet=unet.to(model.unet.device).eval())
    if kind == "generator":
        from diffusers import UNet2DConditionModel

        from .one_step import one_step_from_teacher

        info = manifest["components"]["generator"]
        generator = UNet2DConditionModel.from_pretrained(
            path / info["folder"], use_safetensors=True, torch_dtype=model.unet.dtype
        )
        return one_step_from_teacher(model, generator.to(model.unet.device).eval(), int(info["init_timestep"]))
    if kind == "gan_generator":
        from .gan import apply_generator

        return apply_generator(model, path, manifest)
    raise ArtifactError(f"artifact kind {kind!r} cannot be applied by this version of Erasure Studio")


def _apply_unet_partial(pipe, path: Path, manifest: dict[str, Any]):
    from .sd import replace_components

    info = manifest["components"]["unet"]
    tensors = load_file(path / info["file"])
    if sorted(tensors) != sorted(info["keys"]):
        raise ArtifactError(f"{info['file']} holds other tensors than {MANIFEST} lists; the artifact is inconsistent")
    unet = copy.deepcopy(pipe.unet)
    state = unet.state_dict()
    for key, value in tensors.items():
        if key not in state or state[key].shape != value.shape:
            raise ArtifactError(
                f"UNet tensor {key} of the artifact does not fit this UNet; load the base model it was made from"
            )
    unet.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()}, strict=False)
    return replace_components(pipe, unet=unet.eval())
