"""Loading Stable Diffusion and the few standard pieces every diffusion method shares.

Everything here works on stock diffusers and transformers objects; nothing is patched. The pieces:

- :func:`load_sd` loads the toy model, a local diffusers folder, a single ``.safetensors``/``.ckpt`` file, or a hub id
  that is already in the local cache, and fails fast with a message that says what was looked for.
- :func:`encode_prompts` and :func:`encode_with_prefix`: text conditioning, the latter with continuous embeddings
  spliced in after the start token (the path AdvUnlearn and UnlearnDiffAtk share).
- :func:`sample_until`: an explicit DDIM loop that stops after a given number of steps (ESD's target).
- :func:`eps_to_x0` / :func:`x0_to_eps`: the standard conversions.
- :func:`select_unet_parameters`, :func:`draw_training_timestep`, :func:`diffusion_loss`: what several methods'
  training loops share (which UNet tensors train, where ESD-style targets query the UNet, the denoising loss).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checks import check_pipeline_folder, check_weights_file, loading
from .errors import ModelNotFoundError

logger = logging.getLogger(__name__)

TOY_DIR = Path(__file__).resolve().parent / "toy" / "assets"
CLIP_VOCAB_SIZE = 49408
_SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def toy_path(part: str = "sd") -> Path:
    """Folder of a bundled toy-world model (``"sd"``, ``"clip"``, ``"judge"``, ``"gan"``)."""
    path = TOY_DIR / part
    if not path.exists():
        raise ModelNotFoundError(
            f"the toy world's {part!r} weights are missing from {TOY_DIR}; rebuild them with: erasure-studio toy build"
        )
    return path


def is_toy_model(model: Any) -> bool:
    """True for a bundled toy-world model: ``load_sd("toy")``, ``gan.load("toy")`` and what is built from them.

    Both loaders record ``studio_source["name_or_path"] == "toy"`` (a pipeline's attribute, a GAN bundle's property);
    a pipeline assembled from the toy model by ``replace_components`` keeps it.
    """
    source = getattr(model, "studio_source", None) or {}
    return source.get("name_or_path") in ("toy", "toy-onestep")


SMALL_MODEL_PIXELS = 128
"""Image side at or below which a model counts as small (toy world: 32 px) for the before/after grid's defaults."""


def sample_grid_defaults(pipe: Any) -> tuple[int, int | None]:
    """``(images per prompt, sampler steps)`` of the before/after grid an erasure ends with, sized to the model.

    A small model (the toy world's 32 px, the tests' tiny ones) keeps 3 images per prompt at its pipeline's own
    steps. A full-size model samples 1 image per prompt at 25 steps (the diffusers training scripts' validation
    setting) on an accelerator, and none on a CPU, where even that grid (10 images at 512 px) takes longer than most
    erasures; pass ``num_validation_images`` to ask for it anyway.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None or is_toy_model(pipe):
        return 3, None
    size = unet.config.sample_size
    pixels = (size if isinstance(size, int) else max(size)) * getattr(pipe, "vae_scale_factor", 8)
    if pixels <= SMALL_MODEL_PIXELS:
        return 3, None
    return (0 if execution_device(pipe).type == "cpu" else 1), 25


def load_sd(
    name_or_path: str | os.PathLike = "toy",
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
):
    """Load a Stable Diffusion v1.x pipeline without touching the network.

    Args:
        name_or_path (`str` or `os.PathLike`, defaults to `"toy"`):
            ``"toy"`` (the bundled toy model), ``"toy-onestep"`` (its one-step generator, returned as a
            ``pipelines.one_step.OneStepPipeline``, as is any folder holding one), a local diffusers folder (with
            ``model_index.json``), a single ``.safetensors`` or ``.ckpt`` checkpoint, or a hub id such as
            ``"CompVis/stable-diffusion-v1-4"`` that is already in the local Hugging Face cache.
        dtype (`torch.dtype`, *optional*): weights dtype; fp32 by default, as diffusers does on CPU.
        device (`str` or `torch.device`, *optional*): where to put the pipeline; CPU by default.
        revision (`str`, *optional*): hub revision.

    Returns:
        `StableDiffusionPipeline` with the safety checker off and the progress bar quiet. ``pipe.studio_source``
        records where it came from, for artifact manifests.
    """
    from diffusers import StableDiffusionPipeline

    name = os.fspath(name_or_path)
    kwargs: dict[str, Any] = {"safety_checker": None, "requires_safety_checker": False}
    if dtype is not None:
        kwargs["torch_dtype"] = dtype
    path = Path(name).expanduser()
    if name == "toy-onestep" or (path.is_dir() and _is_one_step_folder(path)):
        from .one_step import load_one_step

        return load_one_step("toy" if name == "toy-onestep" else path, device=device, dtype=dtype)
    expected = (
        "a diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a complete "
        "single-file .safetensors/.ckpt Stable Diffusion v1.x checkpoint"
    )
    if name == "toy":
        source = {"name_or_path": "toy", "revision": None}
        with loading("the toy model", what="Stable Diffusion pipeline", expected=expected):
            pipe = StableDiffusionPipeline.from_pretrained(toy_path("sd"), local_files_only=True, **kwargs)
    elif path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelNotFoundError(
                f"{path} is a folder but not a diffusers pipeline (no model_index.json); "
                "point at the folder that holds model_index.json, or at a single .safetensors file"
            )
        check_pipeline_folder(path)
        source = {"name_or_path": str(path.resolve()), "revision": None}
        with loading(path, what="Stable Diffusion pipeline", expected=expected):
            pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True, **kwargs)
    elif path.suffix in _SINGLE_FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"model file {path} does not exist; check the path")
        if path.suffix not in _SINGLE_FILE_SUFFIXES:
            raise ModelNotFoundError(f"{path} is not a .safetensors or .ckpt checkpoint nor a diffusers folder")
        check_weights_file(path, what="a Stable Diffusion v1.x checkpoint")
        source = {"name_or_path": str(path.resolve()), "revision": None}
        with loading(path, what="Stable Diffusion checkpoint", expected=expected):
            pipe = StableDiffusionPipeline.from_single_file(str(path), local_files_only=True, **kwargs)
    elif looks_like_hub_id(name):
        source = {"name_or_path": name, "revision": revision}
        folder = _cached_snapshot(name, revision)
        check_pipeline_folder(folder)
        with loading(name, what="Stable Diffusion pipeline", expected=expected):
            pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, **kwargs)
    else:
        raise ModelNotFoundError(
            f"model {name!r} not found: it is not 'toy', an existing folder, a .safetensors/.ckpt file, or a hub id"
        )
    check_tokenizer(pipe.tokenizer, source["name_or_path"])
    pipe.set_progress_bar_config(disable=True)
    pipe.studio_source = source
    if device is not None:
        pipe.to(device)
    return pipe


def _is_one_step_folder(path: Path) -> bool:
    index = path / "model_index.json"
    if index.is_file():
        check_pipeline_folder(path)  # an unreadable model_index.json is refused here, in one line
        return json.loads(index.read_text()).get("_class_name") == "OneStepPipeline"
    return (path / "one_step.json").is_file()


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub id, ``"owner/name"`` (not whether such a repo exists).

    Args:
        name (`str`): a model name or path; relative and absolute paths (``./x/y``, ``/x/y``, ``~/x``) never count.
    """
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def _cached_snapshot(repo_id: str, revision: str | None) -> str:
    """The local snapshot folder of a hub repo, without any network access."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as err:  # LocalEntryNotFoundError, or a cache without this revision
        raise ModelNotFoundError(
            f"hub model {repo_id!r} is not in the local Hugging Face cache and nothing is downloaded here; "
            f"download it on a connected machine (huggingface-cli download {repo_id}) or pass a local folder"
        ) from err


def check_tokenizer(tokenizer, source: str = "the model") -> None:
    """Refuse a CLIP tokenizer that did not load properly (offline loads can silently yield 2 tokens)."""
    if tokenizer is None:
        raise ModelNotFoundError(f"{source} has no tokenizer; a Stable Diffusion pipeline needs its CLIP tokenizer")
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise ModelNotFoundError(
            f"the tokenizer of {source} has {len(tokenizer)} tokens instead of CLIP's {CLIP_VOCAB_SIZE}: its "
            "vocab.json/merges.txt are missing or broken; restore the tokenizer folder"
        )


def replace_components(pipe, **components):
    """A new pipeline of the same class sharing ``pipe``'s components except those given (nothing is copied)."""
    kwargs = {**pipe.components, **components}
    if "requires_safety_checker" in getattr(pipe, "config", {}):
        kwargs["requires_safety_checker"] = pipe.config.requires_safety_checker
    new = type(pipe)(**kwargs)
    new.set_progress_bar_config(disable=True)
    new.studio_source = getattr(pipe, "studio_source", None)
    return new


def execution_device(pipe) -> torch.device:
    return next(pipe.unet.parameters()).device


# ---------------------------------------------------------------- text conditioning


def tokenize(tokenizer, prompts: str | list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's length (77 for SD), as the pipeline pads them."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_prompts(tokenizer, text_encoder, prompts: str | list[str]) -> torch.Tensor:
    """The UNet's conditioning (the encoder's last hidden state) for ``prompts``."""
    device = next(text_encoder.parameters()).device
    return text_encoder(tokenize(tokenizer, prompts).to(device))[0]


def encode_embeddings(text_encoder, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """Run a ``CLIPTextModel`` on token embeddings instead of ids: positions, causal encoder, final layer norm.

    transformers 5's ``CLIPTextModel.forward`` only takes ``input_ids``, so this runs its parts in order. The output
    equals ``text_encoder(input_ids).last_hidden_state`` when ``inputs_embeds`` are the ids' embeddings.
    """
    from transformers.masking_utils import create_causal_mask

    seq_len = inputs_embeds.shape[1]
    positions = text_encoder.embeddings.position_ids[:, :seq_len]
    hidden = inputs_embeds + text_encoder.embeddings.position_embedding(positions)
    mask = create_causal_mask(config=text_encoder.config, inputs_embeds=hidden, attention_mask=None, cache=None)
    hidden = text_encoder.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
    return text_encoder.final_layer_norm(hidden)


def splice_prefix(input_ids: torch.Tensor, token_embeds: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """Insert ``k`` embeddings right after the start token: ``[SOT, prefix_1..k, prompt tokens, EOT, pad...]``.

    Args:
        input_ids (`torch.LongTensor` of shape `(B, L)`): the prompt's padded ids.
        token_embeds (`torch.Tensor` of shape `(B, L, D)`): their embeddings.
        prefix (`torch.Tensor` of shape `(k, D)` or `(B, k, D)`): the continuous embeddings to splice in.

    Returns:
        `torch.Tensor` of shape `(B, L, D)`: the sequence is kept at length ``L``, so the last ``k`` positions (pads,
        or the prompt's tail if it was full) drop out.
    """
    if prefix.dim() == 2:
        prefix = prefix.unsqueeze(0).expand(input_ids.shape[0], -1, -1)
    k = prefix.shape[1]
    length = input_ids.shape[1]
    spliced = torch.cat([token_embeds[:, :1], prefix.to(token_embeds.dtype), token_embeds[:, 1 : length - k]], dim=1)
    return spliced


def encode_with_prefix(tokenizer, text_encoder, prompts: str | list[str], prefix: torch.Tensor) -> torch.Tensor:
    """Encode ``prompts`` with continuous prefix embeddings after the start token (gradients flow into ``prefix``)."""
    device = next(text_encoder.parameters()).device
    ids = tokenize(tokenizer, prompts).to(device)
    embeds = text_encoder.embeddings.token_embedding(ids)
    return encode_embeddings(text_encoder, splice_prefix(ids, embeds, prefix))


# ---------------------------------------------------------------- sampling and conversions


def fresh_scheduler(pipe_or_scheduler):
    """An independent copy of a pipeline's scheduler (``set_timesteps`` mutates scheduler state)."""
    scheduler = getattr(pipe_or_scheduler, "scheduler", pipe_or_scheduler)
    return type(scheduler).from_config(scheduler.config)


def guided_noise(
    unet, latents: torch.Tensor, t, cond: torch.Tensor, uncond: torch.Tensor | None, guidance_scale: float
) -> torch.Tensor:
    """Classifier-free-guided noise prediction in one batched UNet call: ε∅ + w·(ε_c − ε∅)."""
    if uncond is None or guidance_scale == 1.0:
        return unet(latents, t, encoder_hidden_states=cond).sample
    if torch.is_tensor(t) and t.dim() == 1 and t.numel() == latents.shape[0] > 1:
        t = torch.cat([t, t])  # one timestep per sample
    both = unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    eps_uncond, eps_cond = both.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


@torch.no_grad()
def sample_until(
    unet,
    scheduler,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    *,
    stop_step: int,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    latent_shape: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the scheduler's sampler from pure noise for ``stop_step`` steps and return ``(latents, t)``.

    ``t`` is the timestep the returned latents sit at (the next one the sampler would denoise), so a UNet queried at
    ``t`` sees the noise level it expects. ``stop_step=0`` returns the initial noise.

    Args:
        unet: the UNet that drives the sampler.
        scheduler: a scheduler (it is copied, never mutated).
        cond, uncond (`torch.Tensor`): text conditioning, batch-first; ``uncond`` may be ``None`` for no guidance.
        stop_step (`int`): number of sampler steps to run, ``0 <= stop_step < num_inference_steps``.
        latent_shape (`tuple`, *optional*): ``(B, C, H, W)``; defaults to the UNet's sample size.
    """
    if not 0 <= stop_step < num_inference_steps:
        raise ValueError(f"stop_step must be in [0, {num_inference_steps}), got {stop_step}")
    scheduler = fresh_scheduler(scheduler)
    device = cond.device
    scheduler.set_timesteps(num_inference_steps, device=device)
    if latents is None:
        if latent_shape is None:
            size = unet.config.sample_size
            latent_shape = (cond.shape[0], unet.config.in_channels, size, size)
        latents = torch.randn(latent_shape, generator=generator, device="cpu").to(device, cond.dtype)
        latents = latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps[:stop_step]:
        model_input = scheduler.scale_model_input(latents, t)
        eps = guided_noise(unet, model_input, t, cond, uncond, guidance_scale)
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents, scheduler.timesteps[stop_step]


def _alpha_bar(alphas_cumprod: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=alphas_cumprod.device).long().reshape(-1)
    a = alphas_cumprod[t].to(like.device, like.dtype)
    return a.reshape(-1, *([1] * (like.dim() - 1)))


def eps_to_x0(eps: torch.Tensor, x_t: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x̂0 = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t, per sample (``t`` may be a scalar or one timestep per sample)."""
    a = _alpha_bar(alphas_cumprod, t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def x0_to_eps(x0: torch.Tensor, x_t: torch.Tensor, t, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ε = (x_t − √ᾱ_t·x0) / √(1−ᾱ_t)."""
    a = _alpha_bar(alphas_cumprod, t, x_t)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def frozen_copy(module: torch.nn.Module, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """A deep copy with gradients off and in eval mode (for the frozen reference networks of a method)."""
    clone = copy.deepcopy(module).eval().requires_grad_(False)
    return clone.to(dtype) if dtype is not None else clone


def trainable_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep fp32 copy with every gradient off; the method then turns on the parameters it trains."""
    return copy.deepcopy(module).float().train().requires_grad_(False)


# ---------------------------------------------------------------- training: which tensors, which timestep, the loss

UNET_PARTS = ("all", "cross_attention", "not_cross_attention", "cross_attention_kv")


def select_unet_parameters(
    unet: torch.nn.Module, part: str = "all", *, layers_only: bool = False
) -> dict[str, torch.nn.Parameter]:
    """UNet parameters by name, in ``named_parameters`` order: the tensors a method trains (or ranks).

    Methods name these sets in their own words (ESD's ``esd-x``, SalUn's ``xattn``) and map them onto a part here.

    Args:
        unet (`torch.nn.Module`): e.g. a ``UNet2DConditionModel``.
        part (`str`, defaults to `"all"`): which part of the UNet, by parameter name:

            - ``"all"``: every parameter;
            - ``"cross_attention"``: names that contain ``attn2`` (diffusers' cross-attention);
            - ``"not_cross_attention"``: names that do not;
            - ``"cross_attention_kv"``: the ``attn2.to_k`` and ``attn2.to_v`` projections only.
        layers_only (`bool`, defaults to `False`): keep only the weights and biases of ``Linear`` and ``Conv2d``
            layers (ESD's official rule: norms never train); by default every parameter of the part counts (SalUn's).

    Returns:
        `dict[str, torch.nn.Parameter]`: the selected parameters themselves (not copies).
    """
    if part not in UNET_PARTS:
        raise ValueError(f"unknown UNet part {part!r}; choose one of {', '.join(UNET_PARTS)}")
    if layers_only:
        named = (
            (f"{module_name}.{name}", module_name, param)
            for module_name, module in unet.named_modules()
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
            for name, param in module.named_parameters(recurse=False)
        )
    else:
        named = ((name, name.rpartition(".")[0], param) for name, param in unet.named_parameters())
    return {name: param for name, module_name, param in named if _in_unet_part(name, module_name, part)}


def _in_unet_part(name: str, module_name: str, part: str) -> bool:
    cross = "attn2" in name
    if part == "cross_attention":
        return cross
    if part == "not_cross_attention":
        return not cross
    if part == "cross_attention_kv":
        return cross and module_name.endswith(("to_k", "to_v"))
    return True


def draw_training_timestep(
    timesteps: torch.Tensor, stop_step: int, num_train_timesteps: int, mode: str, rng: random.Random
) -> int:
    """The DDPM timestep at which the UNet is queried after sampling stopped at sampler step ``stop_step``.

    Args:
        timesteps (`torch.Tensor`): the sampler's timesteps, descending (``scheduler.timesteps`` after
            ``set_timesteps``).
        stop_step (`int`): how many sampler steps ran (:func:`sample_until`'s ``stop_step``).
        num_train_timesteps (`int`): T, the training schedule's length (1000 for SD).
        mode (`str`): ``"scheduler"``, the stopping step's own timestep t (the diffusers ESD script); ``"interval"``,
            uniform over the DDPM timesteps that step covers, ``[t − T/n + 1, t]`` for n sampler steps.
        rng (`random.Random`): the draw's source of randomness.
    """
    t = int(timesteps[stop_step])
    if mode == "scheduler":
        return t
    stride = num_train_timesteps // len(timesteps)
    return rng.randint(max(0, t - stride + 1), t)


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict: ε for SD v1.x, v for v-prediction models."""
    if scheduler.config.get("prediction_type", "epsilon") == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def diffusion_loss(
    unet, scheduler, latents: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """The standard denoising loss MSE(ε_θ(x_t, c, t), ε) with its own t ~ U{0..T−1} and ε.

    Args:
        unet: the UNet being trained.
        scheduler: supplies ᾱ_t (``add_noise``), T and the prediction type (:func:`diffusion_target`).
        latents (`torch.Tensor` of shape `(B, C, h, w)`): scaled VAE latents x_0, on the UNet's device.
        cond (`torch.Tensor` of shape `(B, L, D)`): the text conditioning.
        generator (`torch.Generator`, *optional*): a CPU generator for t and ε (drawn on the CPU, then moved).
    """
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    t = t.to(latents.device)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    x_t = scheduler.add_noise(latents, noise, t)
    pred = unet(x_t, t, encoder_hidden_states=cond).sample
    return F.mse_loss(pred, diffusion_target(scheduler, latents, noise, t))


@torch.no_grad()
def generate(
    pipe,
    prompts: list[str],
    *,
    seeds: list[int] | int = 0,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """Images in [0, 1] ``(N, 3, H, W)``, one per prompt, each from its own seeded generator (batch-independent)."""
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(len(prompts))]
    if len(seeds) != len(prompts):
        raise ValueError("give one seed per prompt")
    kwargs: dict[str, Any] = {"output_type": "pt"}
    # A one-step generator has no sampler steps and no guidance to set: the settings of a multi-step comparison
    # (the same call for the teacher and the generator) apply to the teacher only.
    multi_step = getattr(pipe, "config", {}).get("init_timestep") is None
    if num_inference_steps is not None and multi_step:
        kwargs["num_inference_steps"] = num_inference_steps
    if guidance_scale is not None and multi_step:
        kwargs["guidance_scale"] = guidance_scale
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[start : start + batch_size]]
        out.append(pipe(chunk, generator=gens, **kwargs).images.cpu())
    return torch.cat(out) if out else torch.empty(0)
