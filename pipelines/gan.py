"""The GAN bundle: a StyleGAN2 generator, its discriminator, and where they came from; loading, saving, exporting.

```python
import gan

bundle = gan.load("toy")                       # the toy world's 32x32 StyleGAN2
bundle = gan.load("checkpoints/550000.pt")     # a rosinality/stylegan2-pytorch checkpoint (safe loader)
images = bundle.sample(16, seed=0)             # (16, 3, H, W) in [0, 1], the same for the same seed
gan.export_rosinality(bundle, "ours.pt")       # back to rosinality's format
```

Formats read by :func:`load`:

- ``"toy"``: the bundled toy GAN (``pipelines/toy/assets/gan/``), built by ``erasure-studio toy build --stages gan``.
- a folder with ``config.json``, ``generator.safetensors`` and optionally ``discriminator.safetensors`` and ``vae/``
  (what :func:`save_bundle` writes);
- a ``.safetensors`` file of generator weights; its config comes from the file's header (what
  :func:`save_generator` writes), a JSON file beside it (``<name>.json`` or ``config.json``), or the tensor shapes;
- a rosinality ``.pt`` checkpoint (``g_ema`` or ``g``, ``d``, ``args``). It is read by :func:`_safe_torch_load`
  (``weights_only=True``, with only ``argparse.Namespace`` allowed beyond tensors and containers): a checkpoint that
  carries any other pickled object is refused (:class:`UnsafeCheckpointError`), because unpickling it could run code.

A *latent* StyleGAN2 draws a VAE's latents instead of pixels (the latent-diffusion trick applied to a GAN: the
adversarial game is played on the VAE's small latent grid); its bundle carries the frozen ``diffusers``
``AutoencoderKL`` as ``bundle.vae`` and :meth:`GANBundle.sample` decodes through it. Everything a GAN method trains
(generator, discriminator) stays a stock StyleGAN2 network on the generator's raw outputs; :meth:`GANBundle.decode`
and :meth:`GANBundle.encode` go between those outputs and images. rosinality's format has no place for a VAE, so
:func:`export_rosinality` refuses a latent bundle.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import pickle
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .checks import check_safetensors
from .errors import ArtifactError, ConfigError, ModelNotFoundError
from .stylegan2 import Discriminator, Generator, infer_discriminator_config, infer_generator_config

logger = logging.getLogger(__name__)

FORMAT = "erasure-studio/stylegan2"
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
VAE_FOLDER = "vae"
TOY_GAN = "gan"
TORCH_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
# Seed of the z draws behind the truncation center w̄, so that truncated samples are reproducible.
MEAN_LATENT_SEED = 123_456


class UnsafeCheckpointError(ArtifactError):
    """A checkpoint carries pickled objects that the safe loader does not allow."""


# ---------------------------------------------------------------- the bundle


@dataclass
class GANBundle:
    """A StyleGAN2 generator plus what GAN erasure methods need next to it.

    Args:
        generator (`Generator`): the generator (rosinality's ``g_ema`` when loaded from a checkpoint).
        discriminator (`Discriminator`, *optional*): needed by methods that keep training adversarially
            (Adapt-then-Unlearn).
        latent_dim (`int`, *optional*): size of z; defaults to ``generator.style_dim``.
        metadata (`dict`): where the weights came from (``name_or_path``, ``format``, checkpoint ``args`` ...).
        judge (*optional*): a judge (``pipelines.judge.Judge``) that travels with the model, used by methods whose
            config names none (a test double for tiny random generators, say).
        vae (`diffusers.AutoencoderKL`, *optional*): for a latent StyleGAN2, the frozen VAE whose decoder turns the
            generator's outputs (latents times ``vae.config.scaling_factor``, as in Stable Diffusion) into images.
    """

    generator: Generator
    discriminator: Discriminator | None = None
    latent_dim: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    judge: Any = None
    vae: Any = None

    def __post_init__(self) -> None:
        if self.latent_dim is None:
            self.latent_dim = self.generator.style_dim
        if self.latent_dim != self.generator.style_dim:
            raise ConfigError(
                f"latent_dim={self.latent_dim} differs from the generator's style_dim={self.generator.style_dim}; "
                "leave latent_dim unset"
            )

    @property
    def studio_source(self) -> dict[str, Any]:
        """Identity of the base model, recorded in artifact manifests (``pipelines.artifacts.base_identity``)."""
        return {"name_or_path": self.metadata.get("name_or_path"), "revision": None}

    @property
    def device(self) -> torch.device:
        return self.generator.device

    @property
    def size(self) -> int:
        """Side of the images the bundle draws (the generator's output side times the VAE's upsampling)."""
        if self.vae is None:
            return self.generator.size
        return self.generator.size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def is_latent(self) -> bool:
        """Whether the generator draws VAE latents (decoded by :attr:`vae`) rather than pixels."""
        return self.vae is not None

    def with_generator(self, generator: Generator, **changes: Any) -> GANBundle:
        """This bundle with another generator (an erased copy, a training snapshot); the discriminator, VAE, judge
        and metadata are shared, not copied, unless ``changes`` replaces them."""
        return dataclasses.replace(self, generator=generator, **changes)

    def decode(self, outputs: torch.Tensor) -> torch.Tensor:
        """The generator's raw outputs as images in about [-1, 1] (differentiable; the identity for pixels)."""
        if self.vae is None:
            return outputs
        return self.vae.decode(outputs / self.vae.config.scaling_factor).sample

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the generator's raw outputs would draw them: pixels in [-1, 1], or the VAE's latent
        means times its scaling factor. What the discriminator reads."""
        images = images.to(self.device, torch.float32) * 2 - 1
        if self.vae is None:
            return images
        return self.vae.encode(images).latent_dist.mean * self.vae.config.scaling_factor

    def to(self, device: str | torch.device) -> GANBundle:
        """Move the networks to ``device`` (in place, like ``pipe.to``) and return the bundle."""
        self.generator.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self

    def latents(self, n: int, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The z ``(n, latent_dim)`` and per-layer noise maps that :meth:`sample` uses for ``seed`` (on the CPU).

        Both are drawn from one CPU ``torch.Generator`` seeded with ``seed``, so any two generators of the same
        architecture sample from identical latents (the PUL metric and before/after grids rely on it).
        """
        rng = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.latent_dim, generator=rng)
        noise = [
            torch.randn(n, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), generator=rng) for i in range(self.num_layers)
        ]
        return z, noise

    @property
    def num_layers(self) -> int:
        return self.generator.num_layers

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float = 1.0, *, batch_size: int = 256) -> torch.Tensor:
        """Generate ``n`` images in [0, 1], ``(n, 3, size, size)`` float32 on the CPU, deterministically per ``seed``.

        Args:
            n (`int`): number of images.
            seed (`int`, defaults to 0): seed of z and of the noise maps (see :meth:`latents`).
            truncation (`float`, defaults to 1.0): ψ of the truncation trick; below 1 trades variety for quality.
            batch_size (`int`, defaults to 256): images per forward pass.
        """
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        if not 0 <= truncation <= 1:
            raise ConfigError(f"truncation must be in [0, 1] (1 = none), got {truncation}")
        z, noise = self.latents(n, seed)
        return self.generate(z, noise, truncation=truncation, batch_size=batch_size)

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        noise: list[torch.Tensor] | None = None,
        *,
        truncation: float = 1.0,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Images in [0, 1] (CPU, float32) for given z and noise maps (noise ``None``: the stored fixed maps)."""
        g = self.generator
        device = self.device
        center = None
        if truncation < 1:
            center = g.mean_latent(4096, generator=torch.Generator().manual_seed(MEAN_LATENT_SEED))
        out = []
        for start in range(0, z.shape[0], batch_size):
            stop = start + batch_size
            maps = [m[start:stop].to(device) for m in noise] if noise is not None else None
            images, _ = g(
                [z[start:stop].to(device)],
                truncation=truncation,
                truncation_latent=center,
                noise=maps,
                randomize_noise=False,
            )
            out.append(self.decode(images).float().cpu())
        return to_unit_range(torch.cat(out))


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output (about [-1, 1]) to [0, 1], clamped."""
    return ((images + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------- loading


def load(name_or_path: str | os.PathLike = "toy", *, device: str | torch.device | None = None) -> GANBundle:
    """Load a StyleGAN2 as a :class:`GANBundle`.

    Args:
        name_or_path (`str` or `os.PathLike`, defaults to `"toy"`): ``"toy"``, a bundle folder, a ``.safetensors``
            generator file, or a rosinality ``.pt`` checkpoint (see the module docstring).
        device (`str` or `torch.device`, *optional*): where the networks go (default: CPU).

    Raises:
        ModelNotFoundError: nothing is at the path (or the toy GAN is not built yet).
        UnsafeCheckpointError: a ``.pt`` file carries pickled objects beyond tensors and ``argparse.Namespace``.
        ArtifactError: the file is not a StyleGAN2 in a layout this loader knows.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if str(name_or_path) == "toy":
        from .sd import TOY_DIR

        folder = TOY_DIR / TOY_GAN
        if not (folder / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"the toy GAN's weights are missing from {folder}; "
                "build them with: erasure-studio toy build --stages gan"
            )
        bundle = load_bundle_folder(folder, name_or_path="toy")
    else:
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            bundle = load_bundle_folder(path)
        elif path.is_file() and path.suffix == ".safetensors":
            bundle = load_safetensors_generator(path)
        elif path.is_file() and path.suffix in TORCH_CHECKPOINT_SUFFIXES:
            bundle = load_rosinality_checkpoint(path)
        elif path.is_file():
            raise ArtifactError(
                f"{path} is neither a .safetensors file nor a PyTorch checkpoint "
                f"({', '.join(TORCH_CHECKPOINT_SUFFIXES)}); pass a StyleGAN2 in one of those formats"
            )
        else:
            raise ModelNotFoundError(
                f"no StyleGAN2 at {path}; pass 'toy', a bundle folder, a .safetensors file or a rosinality .pt "
                "checkpoint"
            )
    return bundle.to(device)


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    return module.float().eval().requires_grad_(False)


def _build(cls, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: str):
    try:
        module = cls.from_config(config)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{source} has an invalid {cls.__name__} config ({err}); re-create it") from err
    try:
        module.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise ArtifactError(
            f"the {cls.__name__.lower()} weights in {source} do not fit its config ({first}); the file is corrupted "
            "or from another architecture"
        ) from err
    return _frozen(module)


def load_bundle_folder(folder: str | os.PathLike, *, name_or_path: str | None = None) -> GANBundle:
    """Load a folder written by :func:`save_bundle` (``config.json`` + safetensors)."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file() or not (folder / GENERATOR_FILE).is_file():
        raise ModelNotFoundError(
            f"{folder} is not a GAN bundle folder: it needs {CONFIG_FILE} and {GENERATOR_FILE} (see gan.save_bundle)"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{config_path} is not valid JSON ({err}); re-create the bundle folder") from err
    if not isinstance(config, dict) or not isinstance(config.get("generator"), dict):
        raise ArtifactError(f"{config_path} has no 'generator' config; re-create the bundle folder (gan.save_bundle)")
    check_safetensors(folder / GENERATOR_FILE, what="StyleGAN2 generator weights")
    generator = _build(Generator, config["generator"], load_file(folder / GENERATOR_FILE), str(folder))
    discriminator = None
    if config.get("discriminator") and (folder / DISCRIMINATOR_FILE).is_file():
        check_safetensors(folder / DISCRIMINATOR_FILE, what="StyleGAN2 discriminator weights")
        discriminator = _build(
            Discriminator, config["discriminator"], load_file(folder / DISCRIMINATOR_FILE), str(folder)
        )
    metadata = dict(config.get("metadata") or {})
    metadata.update(name_or_path=name_or_path or str(folder), format=FORMAT)
    vae = _load_vae(folder, config["vae"]) if config.get("vae") else None
    return GANBundle(generator=generator, discriminator=discriminator, metadata=metadata, vae=vae)


def _load_vae(folder: Path, subfolder: Any):
    """The frozen ``AutoencoderKL`` of a latent bundle, from its ``vae/`` subfolder (safetensors only)."""
    from diffusers import AutoencoderKL

    from .checks import confined

    if not isinstance(subfolder, str):
        raise ArtifactError(f"{folder / CONFIG_FILE} names its VAE as {subfolder!r}, not a subfolder; re-create it")
    path = confined(folder, subfolder, what="VAE folder")
    weights = path / "diffusion_pytorch_model.safetensors"
    if not (path / "config.json").is_file() or not weights.is_file():
        raise ArtifactError(
            f"{folder} is a latent GAN bundle but {path.name}/ lacks config.json or "
            "diffusion_pytorch_model.safetensors; restore the VAE folder or re-create the bundle (gan.save_bundle)"
        )
    check_safetensors(weights, what="VAE weights")
    return AutoencoderKL.from_pretrained(path, use_safetensors=True).float().eval().requires_grad_(False)


def load_safetensors_generator(path: str | os.PathLike) -> GANBundle:
    """Load generator weights from one ``.safetensors`` file (config: header, JSON beside it, or tensor shapes)."""
    path = Path(path)
    check_safetensors(path, what="StyleGAN2 generator weights")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    state = load_file(path)
    config = None
    if "config" in header:
        config = json.loads(header["config"])
    else:
        for candidate in (path.with_suffix(".json"), path.parent / CONFIG_FILE):
            if candidate.is_file():
                values = json.loads(candidate.read_text())
                config = values.get("generator", values)
                break
    if config is None:
        try:
            config = infer_generator_config(state)
        except KeyError as err:
            raise ArtifactError(
                f"{path} holds no StyleGAN2 generator in rosinality's key layout (no {err.args[0]!r}); "
                "add a JSON config beside it or re-save it with gan.save_generator"
            ) from err
    generator = _build(Generator, config, state, str(path))
    return GANBundle(generator=generator, metadata={"name_or_path": str(path), "format": "safetensors"})


def _safe_torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` and only ``argparse.Namespace`` allowed beyond tensors/containers."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe_globals is not None:
            with safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        torch.serialization.add_safe_globals([argparse.Namespace])  # torch 2.4: no context manager yet
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # not a refused object but bytes the unpickler cannot parse
            raise ArtifactError(f"{path} is not a readable PyTorch checkpoint; check the file") from err
        raise UnsafeCheckpointError(
            f"{path} carries a pickled object ({found.group(1)}) other than tensors and an argparse Namespace, so it "
            "was not loaded (unpickling could run code); re-save only its state dicts (g_ema, d, args) with "
            "torch.save, or convert it to .safetensors"
        ) from err
    except Exception as err:  # a truncated zip, a legacy file with garbage: torch raises many types here
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArtifactError(f"{path} is not a readable PyTorch checkpoint ({message}); check the file") from err


def _plain(value: Any) -> Any:
    """A JSON-safe copy of checkpoint ``args`` values (anything else becomes its repr)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def load_rosinality_checkpoint(path: str | os.PathLike) -> GANBundle:
    """Load a rosinality/stylegan2-pytorch checkpoint through the safe loader.

    Takes ``g_ema`` (else ``g``) as the generator and ``d`` as the discriminator. Architecture numbers come from the
    tensor shapes (authoritative) and from ``args`` where shapes cannot tell (the channel multiplier of a model
    of 32 px or less).
    """
    path = Path(path)
    checkpoint = _safe_torch_load(path)
    if not isinstance(checkpoint, Mapping):
        raise ArtifactError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict with 'g_ema' or 'g'")
    if "g_ema" in checkpoint or "g" in checkpoint:
        g_state = checkpoint.get("g_ema") or checkpoint["g"]
    elif "conv1.conv.weight" in checkpoint:  # a bare generator state dict
        g_state = checkpoint
    else:
        raise ArtifactError(
            f"{path} has no generator weights (keys: {', '.join(map(str, list(checkpoint)[:8]))}); a rosinality "
            "checkpoint holds 'g_ema' or 'g'"
        )
    args = checkpoint.get("args")
    args_dict = vars(args) if isinstance(args, argparse.Namespace) else {}
    try:
        g_config = infer_generator_config(g_state)
    except KeyError as err:
        raise ArtifactError(
            f"the generator in {path} is not in rosinality's StyleGAN2 key layout (no {err.args[0]!r}); "
            "convert it with rosinality's convert_weight.py first"
        ) from err
    multiplier = args_dict.get("channel_multiplier")
    if g_config["channels"] is None and isinstance(multiplier, int) and g_config["size"] <= 32:
        g_config["channel_multiplier"] = multiplier  # every width is 512 up to 32 px: only args can tell
    if args_dict.get("latent") not in (None, g_config["style_dim"]):
        logger.warning(
            "%s: args.latent=%s but the weights have style_dim=%s; using the weights",
            path,
            args_dict["latent"],
            g_config["style_dim"],
        )
    generator = _build(Generator, g_config, g_state, str(path))

    discriminator = None
    d_state = checkpoint.get("d")
    if isinstance(d_state, Mapping) and d_state:
        try:
            d_config = infer_discriminator_config(d_state)
        except KeyError as err:
            raise ArtifactError(
                f"the discriminator in {path} is not in rosinality's StyleGAN2 key layout (no {err.args[0]!r})"
            ) from err
        if d_config["channels"] is None and isinstance(multiplier, int) and d_config["size"] <= 32:
            d_config["channel_multiplier"] = multiplier
        discriminator = _build(Discriminator, d_config, d_state, str(path))
    metadata = {
        "name_or_path": str(path),
        "format": "rosinality",
        "generator_key": "g_ema" if "g_ema" in checkpoint else "g",
        "args": {k: _plain(v) for k, v in args_dict.items()},
    }
    return GANBundle(generator=generator, discriminator=discriminator, metadata=metadata)


# ---------------------------------------------------------------- saving and exporting


def _tensors(module: torch.nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.contiguous()
    return out


def save_generator(generator: Generator, path: str | os.PathLike) -> dict[str, Any]:
    """Write the generator's full state dict (rosinality key names) to a ``.safetensors`` file, config in its header.

    Returns:
        `dict`: the manifest entry: ``file`` (name), ``config`` (constructor arguments), ``format``, ``num_tensors``.
    """
    path = Path(path)
    config = generator.config
    tensors = _tensors(generator)
    save_file(tensors, path, metadata={"format": FORMAT, "config": json.dumps(config)})
    return {"file": path.name, "format": FORMAT, "config": config, "num_tensors": len(tensors)}


def save_bundle(
    bundle: GANBundle, folder: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None, half: bool = False
) -> Path:
    """Write a bundle folder that :func:`load` reads: ``config.json``, ``generator.safetensors``,
    ``discriminator.safetensors`` (when the bundle has one) and ``vae/`` (a latent bundle's VAE, diffusers layout).
    The folder is written under a hidden staging name and renamed into place, replacing any folder already there, so
    an interrupted save leaves the previous bundle (or nothing), never half of one.

    Args:
        bundle (`GANBundle`): what to save.
        folder (`str` or `os.PathLike`): the folder (created).
        metadata (`dict`, *optional*): extra JSON-safe facts for ``config.json`` (training recipe, quality numbers).
        half (`bool`, defaults to `False`): store weights in fp16 (they load back as fp32).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        dtype = torch.float16 if half else None
        save_file(_tensors(bundle.generator, dtype), staging / GENERATOR_FILE, metadata={"format": FORMAT})
        if bundle.discriminator is not None:
            tensors = _tensors(bundle.discriminator, dtype)
            save_file(tensors, staging / DISCRIMINATOR_FILE, metadata={"format": FORMAT})
        if bundle.vae is not None:
            vae = copy.deepcopy(bundle.vae).to("cpu", torch.float16 if half else torch.float32)
            vae.save_pretrained(staging / VAE_FOLDER, safe_serialization=True)
        config = {
            "format": FORMAT,
            "generator": bundle.generator.config,
            "discriminator": bundle.discriminator.config if bundle.discriminator is not None else None,
            "vae": VAE_FOLDER if bundle.vae is not None else None,
            "metadata": {**{k: v for k, v in bundle.metadata.items() if k != "name_or_path"}, **(metadata or {})},
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    staging.replace(folder)
    return folder


def apply_generator(bundle: GANBundle, artifact_path: str | os.PathLike, manifest: Mapping[str, Any]) -> GANBundle:
    """A new bundle whose generator comes from an artifact folder (safetensors only); ``bundle`` is not changed.

    The discriminator, VAE and judge of ``bundle`` are shared with the new bundle, not copied.
    """
    artifact_path = Path(artifact_path)
    info = manifest.get("components", {}).get("generator")
    if not info or "file" not in info:
        raise ArtifactError(f"{artifact_path} lists no generator file in its manifest; the artifact is inconsistent")
    from .checks import confined

    file = confined(artifact_path, info["file"], what="generator file")
    if not file.is_file():
        raise ArtifactError(f"{file.name} is missing from {artifact_path}; restore it or re-create the artifact")
    config = info.get("config")
    check_safetensors(file, what="StyleGAN2 generator weights")
    if config is None:
        with safe_open(str(file), framework="pt") as handle:
            config = json.loads((handle.metadata() or {}).get("config", "null"))
    if config is None:
        raise ArtifactError(f"{file} has no generator config in the manifest or its header; re-create the artifact")
    generator = _build(Generator, config, load_file(file), str(file)).to(bundle.device)
    return bundle.with_generator(generator, metadata={**bundle.metadata, "artifact": str(artifact_path)})


def write_before_after(result: Any, base_bundle: GANBundle, path: str | os.PathLike, *, n: int = 8, seed: int = 0):
    """A PNG grid: the base and the erased generator on the same latents (top row base, bottom row erased)."""
    from .images import image_grid, to_pil

    erased = base_bundle.with_generator(result.components["generator"])
    before = to_pil(base_bundle.sample(n, seed=seed))
    after = to_pil(erased.sample(n, seed=seed))
    title = f"{result.method}: '{result.config.concept}' erased (same latents, seed {seed})"
    grid = image_grid(
        [before, after], row_labels=["base", "erased"], col_labels=[f"z{i}" for i in range(n)], title=title
    )
    grid.save(path)
    return Path(path)


def export_rosinality(bundle: GANBundle, path: str | os.PathLike) -> Path:
    """Write ``{"g_ema", "d", "args"}`` as a ``.pt`` file that rosinality's scripts load (``generate.py``, ``train.py``
    with ``--ckpt`` needs its optimizer states too, which a bundle does not have).

    ``args`` is an ``argparse.Namespace`` with ``size``, ``latent``, ``n_mlp`` and ``channel_multiplier`` (plus
    ``channels`` when the widths are not rosinality's table, which its ``Generator`` cannot build).
    """
    path = Path(path)
    if bundle.is_latent:
        raise ConfigError(
            "this StyleGAN2 draws VAE latents and rosinality's format has no place for the VAE; keep it as a bundle "
            "folder (gan.save_bundle)"
        )
    g = bundle.generator
    args = argparse.Namespace(
        arch="stylegan2", size=g.size, latent=g.style_dim, n_mlp=g.n_mlp, channel_multiplier=g.channel_multiplier
    )
    if g.channel_overrides:
        args.channels = dict(g.channel_overrides)
    checkpoint: dict[str, Any] = {"g_ema": _tensors(g), "args": args}
    if bundle.discriminator is not None:
        checkpoint["d"] = _tensors(bundle.discriminator)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def copy_bundle(bundle: GANBundle) -> GANBundle:
    """A deep copy of the trainable networks (metadata copied; the judge and the frozen VAE shared)."""
    return bundle.with_generator(
        copy.deepcopy(bundle.generator),
        discriminator=copy.deepcopy(bundle.discriminator),
        metadata=copy.deepcopy(bundle.metadata),
    )
