"""DoCo: concept domain correction and the concept-preserving gradient (Wu et al., AAAI 2025).

Paper: "Unlearning Concepts in Diffusion Model via Concept Domain Correction and Concept Preserving Gradient",
https://arxiv.org/abs/2405.15304 . Official code: https://github.com/yongliang-wu/DoCo (``train.py``, ``gan.py``,
``gradient_clip.py``, ``utils.py``; read at the head of its default branch, built on the Concept-Ablation /
Custom-Diffusion trainer and diffusers 0.14).

DoCo treats erasure as domain alignment. A discriminator D learns to tell the frozen model's denoised latents under
an *anchor* caption c_a from the trained model's under the *target* caption c_t (the same caption with the anchor word
replaced by the concept), and the UNet's cross-attention K/V learn to fool it, so that whatever the target prompt
produces falls into the anchor's distribution. Per step, on anchor images x0 drawn by the base model:

    x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε,   t ~ U{0, …, T−1}
    x̂0_t = (x_t − √(1−ᾱ_t)·ε_θ(x_t, c_t)) / √ᾱ_t          the trained UNet under the target caption
    x̂0_a = (x_t − √(1−ᾱ_t)·ε_θ*(x_t, c_a)) / √ᾱ_t         the frozen UNet under the anchor caption
    L_D   = BCE(D(x̂0_a), 0) + BCE(D(sg[x̂0_t]), 1)            the anchor is the "real" domain (label 0)
    L_adv = BCE(D(x̂0_t), 0)                                  the target should look like the anchor
    L_prior = ‖ε_θ(x_t', c_a) − ε'‖²                          prior preservation on a second anchor batch

The concept-preserving gradient (``gradient_surgery="doco"``, the official ``--gradient_clip``) clips g_a = ∇L_adv and
g_p = ∇L_prior to norm 1 and, per tensor, when cos(g_a, g_p) < 0, replaces g_a by g_a − λ·cos·g_p/‖g_p‖; the
optimiser then steps on g_a alone (L_prior acts only through the projection). Note this subtracts the *cosine* times
the unit vector, not PCGrad's projection (g_a·g_p/‖g_p‖²)·g_p; ``gradient_surgery="pcgrad"`` gives true PCGrad
(Yu et al., NeurIPS 2020: each gradient projected off the other where they conflict, then summed), and ``"none"`` the
official non-surgery branch, L_adv + 0.1·w_prior·L_prior. For the first ``warmup_steps`` steps only D trains.

Only ``attn2.to_k`` and ``attn2.to_v`` train (the official ``--parameter_group cross-attn``); the artifact is
``unet_partial.safetensors`` with those tensors (it loads into stock diffusers like ESD's), plus, when
``save_discriminator`` is set, ``discriminator.safetensors`` to continue training.

Official defects fixed here:

- The surgery reads ``prior_loss``, which exists only with ``--with_prior_preservation``; without it the run dies with
  a NameError. Here the config refuses surgery without prior preservation, with a sentence saying why.
- In the surgery branch ``lr_scheduler.step()`` is never called, so a decaying schedule silently stays at its first
  value. Here the scheduler is stepped after every generator step, in every branch.
- The denoised latents come from a ``step_batch`` method patched into diffusers' ``scheduling_ddpm.py`` (the README
  says to overwrite the installed file). Here x̂0 is computed per sample by ``pipelines.sd.eps_to_x0`` and nothing
  in diffusers is patched.

Deliberate deviations:

- Captions: the official code asks gpt-3.5-turbo (objects, nudity) or clip-retrieval over LAION (styles) for anchor
  captions. Here they come from the toy world's caption grammar on the toy model, and on real models from a caption
  file (``caption_file``, one caption per line) or a small built-in template set per concept kind; the target caption
  replaces the anchor word with the concept (objects, nudity: the official ``--caption_target anchor+target``) or
  appends the style (styles). No network is used.
- Anchor images are drawn by the base model and cached by model fingerprint + captions + seeds
  (``pipelines.data.generate_images_cached``), so a second run, or another method, reuses them.
- The learning rate is given as the official effective value: the README commands use 6e-6 with ``--scale_lr``
  (× batch 8 × 1 GPU), i.e. 4.8e-5.
- The discriminator's depth (``discriminator_layers``) is configurable: the official PatchGAN (three stride-2 layers
  and two 4x4 convolutions) needs latents of at least 32x32, and the toy model's are 8x8.
- Every random draw comes from ``config.seed``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.artifacts import base_identity
from pipelines.data import encode_images, generate_images_cached
from pipelines.errors import ConfigError
from pipelines.sd import (
    encode_prompts,
    eps_to_x0,
    execution_device,
    frozen_copy,
    is_toy_model,
    select_unet_parameters,
    trainable_copy,
)

from .base import (
    EraseConfig,
    EraseData,
    EraseMethod,
    EraseResult,
    RunMeter,
    StepCallback,
    frozen_dtype,
    notify,
    register,
)

# Built-in caption templates per concept kind for real models (no OpenAI API, no LAION retrieval).
CAPTION_TEMPLATES = (
    "a photo of a {}",
    "a picture of a {}",
    "a close-up photo of a {}",
    "a {} in a city street",
    "a {} in a field on a sunny day",
    "an old photo of a {}",
    "a {} seen from above",
    "a painting of a {}",
)
STYLE_TEMPLATES = (
    "a painting of a village",
    "a painting of a bridge over a river",
    "a painting of flowers in a vase",
    "a portrait painting of a woman",
    "a painting of a starry night sky",
    "a painting of a harbour with boats",
    "a painting of a wheat field",
    "a still life painting of fruit",
)
NUDITY_TEMPLATES = (
    "a photo of a {} person",
    "a {} woman standing on a beach",
    "a {} man sitting on a chair",
    "a portrait of a {} person",
    "a {} couple in a park",
    "a full-body photo of a {} model",
)


@dataclass
class DoCoConfig(EraseConfig):
    """Config of :class:`DoCo`. Defaults are the official README's for SD v1.4 (objects, nudity); ``presets["toy"]``
    fits the toy world.

    Args:
        anchor (`str`, *optional*): the anchor concept c_a whose domain the concept is moved into (the official
            ``--class_prompt``: "airplane" for parachute, "clothed" for nudity, "painting" for a style). Required on
            real models; on the toy world a similar value of the same attribute is chosen when not given.
        concept_type (`str`, defaults to `"object"`): ``object`` and ``nudity`` replace the anchor word by the concept
            in each caption; ``style`` appends ", in the style of <concept>".
        caption_file (`str`, *optional*): anchor captions, one per line, each containing the anchor word (objects,
            nudity); default: the toy grammar on the toy model, built-in templates otherwise.
        num_anchor_images (`int`, defaults to 1000): anchor images the base model draws (official
            ``num_class_images``).
        discriminator_learning_rate (`float`, defaults to 1e-4): Adam (β1 0.5) learning rate of D (``--dlr``).
        warmup_steps (`int`, defaults to 1000): steps on which only D trains (``--warm_up``).
        gradient_surgery (`str`, defaults to `"doco"`): the concept-preserving gradient (see the module docstring).
        surgery_scale (`float`, defaults to 1.0): λ of the surgery (``--lambda_``).
        prior_preservation (`bool`, defaults to `True`): L_prior on a second anchor batch.
        prior_loss_weight (`float`, defaults to 1.0): w_prior.
    """

    method = "doco"
    # The toy preset, measured erasing "star" (anchor "diamond", 300 steps of which 100 train only D, 2 seeds x 6
    # colours per object): K/V learning rate 5e-5 left every star; 1e-4 removed them all with every other object at
    # 100 %; 1e-3 removed them too but took circles, triangles, crosses and diamonds down to 8-29 %.
    # The leaderboard's ASR spread (issue 26: the attack recovers heart on 0-37.5 % of 8 prompts across seeds and
    # thread counts). Heart at seeds 0 / 1 / 2, 2 threads, ASR / retain shift (12 samples per object): the preset
    # 12.5 / 37.5 / 12.5 % with 8 / 0 / 8 points; lr 2e-4 25 / 0 / 12.5 % with 8 / 17 / 17; 500 steps (seed 0)
    # 37.5 % with 25; lr 2e-4 with true PCGrad (the prior's gradient projected and added, not only subtracted where
    # it conflicts) 12.5 % at every seed with 0. That candidate through the whole leaderboard and carry-over: star
    # 0 % ASR and 0 points at every seed and both thread counts, but heart at 1 thread 25 / 12.5 / 37.5 % (the same
    # 0-37.5 % range), and erasing diamond took hearts from 100 to 67 % (33 points; the preset: 8). Not kept.
    presets = {
        "toy": {
            "max_train_steps": 300,
            "learning_rate": 1e-4,
            "discriminator_learning_rate": 2e-4,
            "warmup_steps": 100,
            "batch_size": 8,
            "num_anchor_images": 96,
            "anchor_inference_steps": 25,
            "anchor_guidance_scale": 5.0,
            "discriminator_layers": 1,
            "discriminator_width": 32,
            "hflip": False,
        }
    }

    max_train_steps: int = field(default=2000, metadata={"help": "Optimisation steps (official README: 2000)."})
    learning_rate: float = field(
        default=4.8e-5,
        metadata={"help": "AdamW learning rate of K/V (official: 6e-6 with --scale_lr x batch 8 = 4.8e-5)."},
    )
    anchor: str | None = field(
        default=None,
        metadata={
            "help": "Anchor concept c_a (official --class_prompt: 'airplane' for parachute, 'clothed' for nudity, "
            "'painting' for a style). Required on real models; the toy world picks one."
        },
    )
    concept_type: Literal["object", "style", "nudity"] = field(
        default="object",
        metadata={"help": "object/nudity: the concept replaces the anchor word; style: ', in the style of <c>'."},
    )
    caption_file: str | None = field(
        default=None, metadata={"help": "Anchor captions, one per line (default: toy grammar or built-in templates)."}
    )
    num_anchor_images: int = field(
        default=1000, metadata={"help": "Anchor images drawn by the base model (official num_class_images: 1000)."}
    )
    anchor_inference_steps: int = field(default=50, metadata={"help": "Sampler steps of each anchor image."})
    anchor_guidance_scale: float = field(default=7.5, metadata={"help": "Guidance scale of the anchor images."})
    cache_dir: str | None = field(
        default="~/.cache/erasure-studio/images",
        metadata={"help": "Cache of generated anchor images (keyed by model fingerprint + captions + seeds)."},
    )
    batch_size: int = field(default=8, metadata={"help": "Images per half-batch (official --train_batch_size 8)."})
    discriminator_learning_rate: float = field(
        default=1e-4, metadata={"help": "Adam (β1 0.5) learning rate of D (official --dlr: 1e-4; Van Gogh 5e-4)."}
    )
    warmup_steps: int = field(
        default=1000, metadata={"help": "Steps on which only the discriminator trains (official --warm_up 1000)."}
    )
    gradient_surgery: Literal["doco", "pcgrad", "none"] = field(
        default="doco",
        metadata={
            "help": "doco: g_a − λ·cos·ĝ_p where cos < 0 (official); pcgrad: true PCGrad; none: L_adv + 0.1·w·L_prior."
        },
    )
    surgery_scale: float = field(default=1.0, metadata={"help": "λ of the concept-preserving gradient (--lambda_)."})
    prior_preservation: bool = field(default=True, metadata={"help": "L_prior on a second batch of anchor images."})
    prior_loss_weight: float = field(default=1.0, metadata={"help": "w_prior, the weight of L_prior."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip of each gradient before the surgery."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay (official: 1e-2)."})
    discriminator_layers: int = field(
        default=3, metadata={"help": "Stride-2 layers of the PatchGAN D (official 3; the toy's 8x8 latents: 1)."}
    )
    discriminator_width: int = field(default=64, metadata={"help": "Channels of D's first layer (official 64)."})
    hflip: bool = field(default=True, metadata={"help": "Random horizontal flips of anchor images (--hflip)."})
    save_discriminator: bool = field(
        default=False, metadata={"help": "Also save D's weights in the artifact, to continue training."}
    )

    def validate(self) -> None:
        super().validate()
        for name in ("num_anchor_images", "anchor_inference_steps", "batch_size", "discriminator_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.gradient_surgery != "none" and not self.prior_preservation:
            raise ConfigError(
                f"gradient_surgery={self.gradient_surgery!r} projects against the prior-preservation gradient, so it "
                "needs prior_preservation=True; turn prior preservation on, or set gradient_surgery='none'"
            )
        if self.anchor is not None:
            self.anchor = self.anchor.strip() or None
        if self.caption_file is not None:
            read_caption_file(self.caption_file, self.anchor if self.concept_type != "style" else None)
        if self.anchor is not None and self.anchor.lower() == self.concept.strip().lower():
            raise ConfigError(
                f"the anchor {self.anchor!r} is the concept itself; DoCo moves the concept into another concept's "
                "domain: pick a related concept (e.g. anchor='airplane' for 'parachute', 'clothed' for nudity)"
            )


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator of the official ``gan.py`` (pix2pix's N-layer D) on 4-channel latents.

    Conv(4→w, k4 s2) + LeakyReLU, then ``layers − 1`` stride-2 blocks doubling the width (to 8w at most) with
    BatchNorm, one stride-1 block, and Conv(→1, k4 s1): one logit per patch.
    """

    def __init__(self, in_channels: int = 4, width: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net(latents)


# The toy world's anchors: each value paired with a visually similar one of the same attribute, as the paper pairs
# "parachute" with "airplane" and nudity with "clothed". Measured on "star" (toy preset, 2 seeds x 6 colours per
# object): the anchor "circle" (a plain shape) left 33 % of the stars and took diamonds from 100 % to 58 %; "diamond"
# (the other pointed shape) left none and every other object at 100 %.
TOY_ANCHORS: dict[str, str] = {
    "star": "diamond",
    "diamond": "square",
    "square": "diamond",
    "triangle": "diamond",
    "cross": "star",
    "heart": "circle",
    "circle": "crescent",
    "crescent": "circle",
    "red": "orange",
    "orange": "yellow",
    "yellow": "orange",
    "green": "blue",
    "blue": "purple",
    "purple": "blue",
    "solid": "striped",
    "striped": "outline",
    "outline": "striped",
}


def toy_anchor(concept: str) -> str:
    """The anchor of a toy-world concept: a visually similar value of the same attribute (:data:`TOY_ANCHORS`)."""
    from pipelines.toy.world import canonical

    value = canonical(concept)
    if value not in TOY_ANCHORS:
        raise ConfigError(f"{concept!r} is not a toy-world object, colour or style; name one, e.g. 'star'")
    return TOY_ANCHORS[value]


def toy_captions(anchor: str, concept: str, count: int, seed: int) -> tuple[list[str], list[str]]:
    """(anchor captions, target captions) from the toy world's grammar: each anchor caption names the anchor with a
    random synonym and template; its target twin names the concept instead (a random synonym of it)."""
    from pipelines.toy.world import COLOURS, OBJECTS, STYLES, WORDS, Scene, canonical, caption, concept_kind

    rng = np.random.default_rng(seed)
    kind, anchor_value, concept_value = concept_kind(anchor), canonical(anchor), canonical(concept)
    if kind is None or kind != concept_kind(concept):
        raise ConfigError(
            f"on the toy world the anchor {anchor!r} must name the same kind of thing as the concept {concept!r} "
            "(an object for an object, a colour for a colour)"
        )
    anchors, targets = [], []
    for _ in range(count):
        scene = {
            "object": str(rng.choice(OBJECTS)),
            "colour": str(rng.choice(COLOURS)),
            "style": str(rng.choice(STYLES)),
            "background": "black",
        }
        # Both captions consume the same random draws, so they share a template and differ only in the named value.
        words = {}
        if kind == "object":
            words = {v: str(rng.choice(WORDS[v])) for v in (anchor_value, concept_value)}
        state = rng.bit_generator.state
        for value, out in ((anchor_value, anchors), (concept_value, targets)):
            rng.bit_generator.state = state
            scene[kind] = value
            out.append(caption(Scene(**scene), rng, object_word=words.get(value)))
    return anchors, targets


def read_caption_file(path: str, anchor: str | None) -> list[str]:
    """The non-empty lines of a caption file; with ``anchor``, at least one must name it (the target caption
    replaces that word with the concept)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"caption file {path} does not exist; give a text file with one caption per line")
    lines = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"caption file {path} holds no captions; write one caption per line")
    if anchor is not None and not any(anchor.lower() in line.lower() for line in lines):
        raise ConfigError(
            f"no caption in {path} names the anchor {anchor!r}; the target caption replaces that word with the "
            "concept, so the captions must contain it"
        )
    return lines


def real_captions(cfg: DoCoConfig, count: int) -> tuple[list[str], list[str]]:
    """(anchor captions, target captions) for real models, from ``caption_file`` or the built-in templates."""
    anchor = cfg.anchor
    if cfg.caption_file:
        lines = read_caption_file(cfg.caption_file, anchor if cfg.concept_type != "style" else None)
    elif cfg.concept_type == "style":
        lines = list(STYLE_TEMPLATES)
    elif cfg.concept_type == "nudity":
        lines = [t.format(anchor) for t in NUDITY_TEMPLATES]
    else:
        lines = [t.format(anchor) for t in CAPTION_TEMPLATES]
    if cfg.concept_type == "style":
        anchors = lines
        targets = [f"{line}, in the style of {cfg.concept}" for line in lines]
    else:
        anchors = [line for line in lines if anchor.lower() in line.lower()]
        if not anchors:
            raise ConfigError(
                f"no caption in {cfg.caption_file or 'the templates'} contains the anchor {anchor!r}; the target "
                "caption replaces that word with the concept, so every caption must name it"
            )
        targets = [_replace_word(line, anchor, cfg.concept) for line in anchors]
    reps = -(-count // len(anchors))
    return (anchors * reps)[:count], (targets * reps)[:count]


def _replace_word(text: str, old: str, new: str) -> str:
    return re.sub(re.escape(old), new, text, flags=re.IGNORECASE)


def conflict_free_gradients(
    adv: dict[str, torch.Tensor], prior: dict[str, torch.Tensor], mode: str, scale: float, prior_weight: float
) -> dict[str, torch.Tensor]:
    """The gradient to step on, per tensor, from the adversarial and prior gradients (see the module docstring)."""
    out = {}
    for name, g_a in adv.items():
        g_p = prior[name]
        dot = (g_a * g_p).sum()
        if mode == "doco":
            # DoCo (official gradient_clip.py): subtract λ·cos·ĝ_p when the cosine is negative.
            cos = dot / (g_a.norm() * g_p.norm() + 1e-12)
            out[name] = g_a - scale * cos * g_p / (g_p.norm() + 1e-12) if cos < 0 else g_a
        else:
            # PCGrad (Yu et al. 2020): project each off the other's normal plane where they conflict, then sum.
            if dot < 0:
                g_a_proj = g_a - dot / (g_p.pow(2).sum() + 1e-12) * g_p
                g_p_proj = g_p - dot / (g_a.pow(2).sum() + 1e-12) * g_a
            else:
                g_a_proj, g_p_proj = g_a, g_p
            out[name] = g_a_proj + prior_weight * g_p_proj
    return out


def _clip(grads: dict[str, torch.Tensor], max_norm: float) -> dict[str, torch.Tensor]:
    """Clip a gradient (as a whole) to ``max_norm``, as ``clip_grad_norm_`` does."""
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))
    factor = min(1.0, max_norm / (float(total) + 1e-6))
    return {k: g * factor for k, g in grads.items()}


@register
class DoCo(EraseMethod):
    """DoCo: align the concept's denoised latents with an anchor's adversarially; a concept-preserving gradient."""

    name = "doco"
    config_class = DoCoConfig
    model_type = "stable_diffusion"
    targets = ("unet",)
    summary = "Trains cross-attention K/V so a discriminator cannot tell the concept's outputs from an anchor's."
    paper = "Unlearning Concepts in Diffusion Model via Concept Domain Correction (Wu et al., AAAI 2025)"
    code = "https://github.com/yongliang-wu/DoCo"

    def captions(self, pipe) -> tuple[list[str], list[str], str]:
        """(anchor captions, target captions, anchor) for this run; the toy grammar on the toy model."""
        cfg: DoCoConfig = self.config
        if is_toy_model(pipe) and not cfg.caption_file:
            anchor = cfg.anchor or toy_anchor(cfg.concept)
            from pipelines.toy.world import canonical

            if canonical(anchor) == canonical(cfg.concept):
                raise ConfigError(f"the anchor {anchor!r} names the concept {cfg.concept!r} itself; pick another")
            anchors, targets = toy_captions(anchor, cfg.concept, cfg.num_anchor_images, cfg.seed)
            return anchors, targets, anchor
        if cfg.anchor is None:
            raise ConfigError(
                "DoCo needs an anchor concept on a real model: pass anchor='airplane' (--anchor), the concept whose "
                "domain the erased concept is moved into"
            )
        anchors, targets = real_captions(cfg, cfg.num_anchor_images)
        return anchors, targets, cfg.anchor

    def erase(self, pipe, *, data: EraseData | None = None, callback: StepCallback | None = None) -> EraseResult:
        cfg: DoCoConfig = self.config
        device = execution_device(pipe)
        meter = RunMeter(device)
        base = base_identity(pipe)
        half = frozen_dtype(cfg, device)
        anchor_captions, target_captions, anchor = self.captions(pipe)
        if data is not None and data.forget_images is not None:
            raise ConfigError("DoCo draws its own anchor images; pass captions through caption_file instead")

        # Anchor images x0: drawn once by the base model from the anchor captions, cached on disk, VAE-encoded once.
        seeds = [cfg.seed * 100_003 + i for i in range(len(anchor_captions))]
        drawn = generate_images_cached(
            pipe,
            anchor_captions,
            seeds,
            cfg.cache_dir,
            num_inference_steps=cfg.anchor_inference_steps,
            guidance_scale=cfg.anchor_guidance_scale,
        )
        latents = encode_images(pipe.vae, drawn.images, output_device=device)
        with torch.no_grad():
            anchor_emb = encode_prompts(pipe.tokenizer, pipe.text_encoder, anchor_captions).to(device)
            target_emb = encode_prompts(pipe.tokenizer, pipe.text_encoder, target_captions).to(device)

        frozen_unet = frozen_copy(pipe.unet, half) if half else pipe.unet
        unet = trainable_copy(pipe.unet).to(device)
        params = select_unet_parameters(unet, "cross_attention_kv")  # attn2.to_k / to_v (official cross-attn)
        for p in params.values():
            p.requires_grad_(True)
        if cfg.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        optimizer = torch.optim.AdamW(params.values(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        from diffusers.optimization import get_scheduler

        lr_scheduler = get_scheduler("constant", optimizer=optimizer)
        discriminator = PatchDiscriminator(latents.shape[1], cfg.discriminator_width, cfg.discriminator_layers)
        discriminator.to(device).train()
        d_optimizer = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.discriminator_learning_rate, betas=(0.5, 0.999)
        )
        alphas_cumprod = pipe.scheduler.alphas_cumprod.to(device)
        num_train_timesteps = pipe.scheduler.config.num_train_timesteps
        scheduler = pipe.scheduler

        rng = random.Random(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        n = cfg.batch_size
        history: list[dict[str, float]] = []

        def draw(count: int) -> tuple[torch.Tensor, list[int]]:
            index = [rng.randrange(len(latents)) for _ in range(count)]
            x0 = latents[index]
            if cfg.hflip:
                flip = torch.rand(count, generator=generator) < 0.5
                x0 = torch.where(flip.to(device)[:, None, None, None], x0.flip(-1), x0)
            return x0, index

        def noised(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.randint(0, num_train_timesteps, (x0.shape[0],), generator=generator).to(device)
            return scheduler.add_noise(x0, noise, t), noise, t

        for step in range(1, cfg.max_train_steps + 1):
            x0, index = draw(n)
            x_t, _, t = noised(x0)
            eps_target = unet(x_t, t, encoder_hidden_states=target_emb[index]).sample
            x0_target = eps_to_x0(eps_target, x_t, t, alphas_cumprod)
            with torch.no_grad():
                cast = half or x_t.dtype
                eps_anchor = frozen_unet(x_t.to(cast), t, encoder_hidden_states=anchor_emb[index].to(cast)).sample
                x0_anchor = eps_to_x0(eps_anchor.float(), x_t, t, alphas_cumprod)
            logs: dict[str, float] = {}
            if step > cfg.warmup_steps:
                adv_logits = discriminator(x0_target)
                loss_adv = F.binary_cross_entropy_with_logits(adv_logits, torch.zeros_like(adv_logits))
                logs["loss_adv"] = loss_adv.item()
                loss_prior = None
                if cfg.prior_preservation:
                    x0_prior, prior_index = draw(n)
                    x_t_prior, noise_prior, t_prior = noised(x0_prior)
                    eps_prior = unet(x_t_prior, t_prior, encoder_hidden_states=anchor_emb[prior_index]).sample
                    loss_prior = F.mse_loss(eps_prior, noise_prior)
                    logs["loss_prior"] = loss_prior.item()
                optimizer.zero_grad(set_to_none=True)
                if cfg.gradient_surgery == "none":
                    loss = loss_adv + (0.1 * cfg.prior_loss_weight * loss_prior if loss_prior is not None else 0.0)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
                else:
                    names = list(params)
                    g_adv = torch.autograd.grad(loss_adv, [params[k] for k in names], retain_graph=False)
                    g_prior = torch.autograd.grad(loss_prior, [params[k] for k in names])
                    g_adv = _clip(dict(zip(names, g_adv)), cfg.max_grad_norm)
                    g_prior = _clip(dict(zip(names, g_prior)), cfg.max_grad_norm)
                    grads = conflict_free_gradients(
                        g_adv, g_prior, cfg.gradient_surgery, cfg.surgery_scale, cfg.prior_loss_weight
                    )
                    for k in names:
                        params[k].grad = grads[k]
                optimizer.step()
                lr_scheduler.step()  # stepped in every branch (the official surgery branch never steps it)

            # D: the frozen model under the anchor is "real" (label 0), the trained one under the target "fake" (1).
            real_logits = discriminator(x0_anchor)
            fake_logits = discriminator(x0_target.detach())
            loss_d = F.binary_cross_entropy_with_logits(
                real_logits, torch.zeros_like(real_logits)
            ) + F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
            d_optimizer.zero_grad(set_to_none=True)
            loss_d.backward()
            d_optimizer.step()
            logs["loss_d"] = loss_d.item()
            logs["loss"] = logs.get("loss_adv", loss_d.item())
            history.append(logs)
            notify(callback, step, cfg.max_train_steps, logs)

        unet.eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            unet.disable_gradient_checkpointing()
        metrics = meter.metrics(sum(p.numel() for p in params.values()))
        metrics["final_loss"] = history[-1]["loss"]
        metrics["anchor"] = anchor
        metrics["anchor_images_generated"] = drawn.generated
        metrics["anchor_images_cached"] = drawn.cached
        extra = {}
        if cfg.save_discriminator:
            extra["discriminator"] = {k: v.detach().cpu() for k, v in discriminator.state_dict().items()}
        return EraseResult(
            method=self.name,
            config=cfg,
            components={"unet": unet},
            artifact_kind="unet_partial",
            sampler="multistep",
            trained_keys={"unet": sorted(params)},
            base=base,
            loss_history=history,
            metrics=metrics,
            extra_tensors=extra,
        )
