"""One-step text-to-image generators distilled from Stable Diffusion: :class:`OneStepPipeline` and the SiD pieces.

A one-step generator (SiD-LSG, SD-Turbo, SFD's erased generator) is a UNet with Stable Diffusion's architecture that
maps noise to a clean latent in a single call. Following Score identity Distillation (Zhou et al., ICML 2024; the
form SFD uses), the generator is the teacher's x̂0 parameterisation evaluated at one fixed timestep t_init:

    x_init = √(1 − ᾱ_init) · z,        z ~ N(0, I)
    G_θ(z, c) = (x_init − √(1 − ᾱ_init) · ε_θ(x_init, t_init, c)) / √ᾱ_init

so a generator initialised from the teacher's UNet starts as the teacher's one-step denoiser. The pipeline keeps the
teacher's VAE, text encoder, tokenizer and scheduler (for ᾱ); only the UNet differs.

```python
from pipelines.one_step import OneStepPipeline, load_one_step

pipe = load_one_step("toy")                          # the toy world's one-step generator
images = pipe(["a red circle"], generator=torch.Generator().manual_seed(0)).images
pipe.save_pretrained("my-one-step")                  # a diffusers folder; OneStepPipeline.from_pretrained reads it
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .errors import ConfigError, ModelNotFoundError, NotAModelError
from .sd import _alpha_bar, encode_prompts, eps_to_x0, guided_noise

DEFAULT_INIT_TIMESTEP = 625
"""t_init of SiD-LSG and of SFD's Stable Diffusion setting (``--init_timestep 625``)."""


def one_step_x0(
    unet: torch.nn.Module, noise: torch.Tensor, cond: torch.Tensor, init_timestep: int, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """G_θ(z, c): the generator's clean latent for noise ``z`` (differentiable in the UNet's parameters).

    Args:
        unet: the generator (a ``UNet2DConditionModel``).
        noise (`torch.Tensor` of shape `(B, C, H, W)`): z ~ N(0, I).
        cond (`torch.Tensor`): text conditioning, one row per sample.
        init_timestep (`int`): t_init.
        alphas_cumprod (`torch.Tensor`): the teacher's ᾱ.
    """
    a = _alpha_bar(alphas_cumprod, init_timestep, noise)
    x_init = (1 - a).sqrt() * noise
    t = torch.full((noise.shape[0],), init_timestep, device=noise.device, dtype=torch.long)
    eps = unet(x_init, t, encoder_hidden_states=cond).sample
    return eps_to_x0(eps, x_init, init_timestep, alphas_cumprod)


def guided_x0(
    unet: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance_scale: float,
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """A network's x̂0 at ``(x_t, t)`` under classifier-free guidance (the ``f(x_t; c)`` of SiD and SFD)."""
    return eps_to_x0(guided_noise(unet, x_t, t, cond, uncond, guidance_scale), x_t, t, alphas_cumprod)


def sid_generator_loss(
    images: torch.Tensor, real_x0: torch.Tensor, fake_x0: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """The SiD generator loss per sample (Zhou et al. 2024, Eq. 23; SFD Eq. 8), summed over pixels.

        L = (f_p − f_ψ)ᵀ [ (f_p − x_g) − α (f_p − f_ψ) ] / ω,      ω = mean |f_p − x_g|   (no gradient)

    Gradients reach the generator through ``images`` (x_g) and through the x_t both networks were queried at.

    Args:
        images (`torch.Tensor`): x_g, the generator's clean latents.
        real_x0 (`torch.Tensor`): f_p, the teacher's x̂0 of x_t (the override condition in SFD's forget branch).
        fake_x0 (`torch.Tensor`): f_ψ, the fake score network's x̂0 of the same x_t.
        alpha (`float`, defaults to 1.0): α; 1.0 in SiD-LSG and SFD's SD setting, 1.2 in its CIFAR setting.

    Returns:
        `torch.Tensor` of shape `(B,)`.
    """
    weight = (real_x0 - images).abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-5).detach()
    diff = real_x0 - fake_x0
    return (diff * ((real_x0 - images) - alpha * diff) / weight).sum(dim=(1, 2, 3))


class OneStepPipeline(DiffusionPipeline):
    r"""Text-to-image in one UNet call: a distilled generator with Stable Diffusion's VAE and text encoder.

    Args:
        vae (`AutoencoderKL`): decodes the generator's latents.
        text_encoder (`CLIPTextModel`): the teacher's text encoder.
        tokenizer (`CLIPTokenizer`): its tokenizer.
        unet (`UNet2DConditionModel`): the one-step generator.
        scheduler: the teacher's scheduler; only its ᾱ (``alphas_cumprod``) is used.
        init_timestep (`int`, defaults to 625): t_init, the timestep the generator is evaluated at.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, init_timestep: int = DEFAULT_INIT_TIMESTEP):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_to_config(init_timestep=int(init_timestep))
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        *,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        num_inference_steps: int = 1,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        """Generate images.

        Args:
            prompt (`str` or `list[str]`): the prompt(s); or pass ``prompt_embeds``.
            num_images_per_prompt (`int`, defaults to 1): images per prompt.
            generator (`torch.Generator` or a list of them, *optional*): one per image for batch-independent seeds.
            latents (`torch.Tensor`, *optional*): the noise z, if you want to give it.
            prompt_embeds (`torch.Tensor`, *optional*): the text encoder's output, instead of ``prompt``.
            num_inference_steps (`int`, defaults to 1): must be 1; accepted so that code written for multi-step
                pipelines fails clearly rather than silently.
            output_type (`str`, defaults to `"pil"`): ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            return_dict (`bool`, defaults to `True`): return an ``ImagePipelineOutput`` rather than a tuple.
        """
        if num_inference_steps != 1:
            raise ValueError(
                f"a one-step generator samples in exactly one step, got num_inference_steps={num_inference_steps}; "
                "leave it out (or use the teacher StableDiffusionPipeline for multi-step sampling)"
            )
        device = self._execution_device
        if prompt_embeds is None:
            if prompt is None:
                raise ValueError("pass prompt or prompt_embeds")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds = encode_prompts(self.tokenizer, self.text_encoder, prompts)
        prompt_embeds = prompt_embeds.to(device=device, dtype=self.unet.dtype)
        prompt_embeds = prompt_embeds.repeat_interleave(num_images_per_prompt, dim=0)
        batch = prompt_embeds.shape[0]
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} images; pass one per image")
        size = self.unet.config.sample_size
        shape = (batch, self.unet.config.in_channels, size, size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=prompt_embeds.dtype)
        alphas_cumprod = self.scheduler.alphas_cumprod.to(device)
        x0 = one_step_x0(
            self.unet, latents.to(device, prompt_embeds.dtype), prompt_embeds, self.init_timestep, alphas_cumprod
        )
        if output_type == "latent":
            images = x0
        else:
            decoded = self.vae.decode(x0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
            images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    @property
    def init_timestep(self) -> int:
        return self.config.init_timestep


def is_one_step(model: Any) -> bool:
    """True for a :class:`OneStepPipeline` (and anything built from one)."""
    return isinstance(model, OneStepPipeline)


def one_step_from_teacher(teacher, generator_unet: torch.nn.Module, init_timestep: int) -> OneStepPipeline:
    """A :class:`OneStepPipeline` around ``generator_unet`` sharing the teacher's VAE, text encoder, tokenizer and
    scheduler (nothing is copied)."""
    pipe = OneStepPipeline(
        vae=teacher.vae,
        text_encoder=teacher.text_encoder,
        tokenizer=teacher.tokenizer,
        unet=generator_unet,
        scheduler=teacher.scheduler,
        init_timestep=init_timestep,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.studio_source = getattr(teacher, "studio_source", None)
    return pipe


ONE_STEP_CONFIG = "one_step.json"
"""The file that makes a folder with a ``generator/`` UNet a one-step generator of a named teacher."""


def load_one_step(
    name_or_path: str | os.PathLike = "toy",
    *,
    teacher: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> OneStepPipeline:
    """Load a one-step generator.

    Args:
        name_or_path: ``"toy"`` (the toy world's generator, distilled from the toy SD by ``toy build --stages
            onestep``), a folder written by ``OneStepPipeline.save_pretrained`` (with ``model_index.json``), or a
            folder with ``generator/`` (a UNet) and ``one_step.json`` (``init_timestep``, ``teacher``) that borrows
            the rest from its teacher.
        teacher (*optional*): the teacher pipeline for a ``generator/`` folder; loaded from ``one_step.json`` if not
            given.
        device, dtype: where and in which dtype to load the weights.

    Returns:
        `OneStepPipeline`.
    """
    from diffusers import UNet2DConditionModel

    from .sd import TOY_DIR, load_sd

    name = os.fspath(name_or_path)
    path = TOY_DIR / "onestep" if name == "toy" else Path(name).expanduser()
    if name == "toy" and not path.is_dir():
        raise ModelNotFoundError(
            f"the toy world's one-step generator is missing from {path}; build it with: "
            "erasure-studio toy build --stages onestep"
        )
    if not path.is_dir():
        raise ModelNotFoundError(f"one-step generator folder {path} does not exist; check the path")
    from .checks import check_pipeline_folder, check_weights_folder, loading

    expected = f"a OneStepPipeline folder (model_index.json) or generator/ with {ONE_STEP_CONFIG}"
    if (path / "model_index.json").is_file():
        check_pipeline_folder(path, what="one-step pipeline")
        with loading(path, what="one-step generator", expected=expected):
            pipe = OneStepPipeline.from_pretrained(
                path, local_files_only=True, **({"torch_dtype": dtype} if dtype else {})
            )
        pipe.set_progress_bar_config(disable=True)
        pipe.studio_source = {"name_or_path": str(path.resolve()), "revision": None}
        return pipe.to(device) if device is not None else pipe
    if not (path / ONE_STEP_CONFIG).is_file() or not (path / "generator").is_dir():
        raise ModelNotFoundError(
            f"{path} is not a one-step generator: it needs model_index.json (OneStepPipeline.save_pretrained) or "
            f"generator/ with {ONE_STEP_CONFIG}"
        )
    try:
        info = json.loads((path / ONE_STEP_CONFIG).read_text())
        init_timestep = int(info["init_timestep"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise NotAModelError(
            f"{path / ONE_STEP_CONFIG} is not a valid one-step config; it needs a JSON object with an integer "
            "init_timestep (and teacher)"
        ) from None
    check_weights_folder(path / "generator", what="one-step generator UNet")
    if teacher is None:
        if "teacher" not in info:
            raise ConfigError(f"{path / ONE_STEP_CONFIG} names no teacher; pass teacher=")
        teacher = load_sd(info["teacher"], dtype=dtype)
    with loading(path / "generator", what="one-step generator UNet", expected=expected):
        unet = UNet2DConditionModel.from_pretrained(
            path / "generator", use_safetensors=True, torch_dtype=dtype or teacher.unet.dtype
        ).eval()
    pipe = one_step_from_teacher(teacher, unet, init_timestep)
    if name == "toy":
        pipe.studio_source = {"name_or_path": "toy-onestep", "revision": None}
    return pipe.to(device) if device is not None else pipe
