"""Train the toy world from scratch: the judge, the VAE, the toy Stable Diffusion, the toy CLIP, the StyleGAN2.

``erasure-studio toy build`` runs this. Each stage is an explicit, unrolled loop with a tqdm bar; everything is
seeded, and the weights are written as safetensors with a checksum list. ``assets/build_report.json`` has each
stage's time and quality numbers on this project's 2-core CPU machine.

Recipes follow the feasibility run in ENVIRONMENT.md: a latent space of 8x8x4, a UNet with cross-attention at 8x8,
4x4 and the middle block, classifier-free-guidance dropout of 10 %, EMA weights, DDIM sampling.

- The VAE is trained with a perceptual term in the judge's features (``train_vae``), so the judge must come first.
- The text encoder (a ``CLIPTextModel``, 96 wide) is trained jointly with the UNet on the denoising loss, as in the
  feasibility run, not taken from the toy CLIP. The first shipped world used the toy CLIP's 64-wide text tower,
  trained contrastively and frozen, as SD v1 freezes OpenAI's: contrastive training only shapes the pooled
  end-of-text state, and the per-token states the UNet reads stayed crowded ("star" and "cross" at cosine 0.83), so
  every erasure method took "cross" down with "star", and the UNet drew the named object in 94 % of samples after
  8,000 steps.
- The toy CLIP is trained on its own afterwards; it serves CLIP scores and zero-shot judging.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..errors import MissingWeightsError
from ..training import ema_update
from .models import (
    CLIP_IMAGE_MEAN,
    CLIP_IMAGE_STD,
    CLIP_PROJECTION_DIM,
    CLIP_TEXT_CONFIG,
    CLIP_VISION_CONFIG,
    HEADS,
    SCHEDULER_CONFIG,
    TEXT_ENCODER_CONFIG,
    UNET_CONFIG,
    VAE_CONFIG,
    judge_net_from_config,
    write_clip_tokenizer,
)
from .quality import sample_accuracy
from .world import attribute_labels, canonical, caption, make_dataset

logger = logging.getLogger(__name__)

STAGES = ("judge", "judge_heldout", "vae", "sd", "onestep", "clip", "gan")
"""Default stages, in order. ``judge_heldout`` is the second judge (``toy-heldout``) that the GAN is measured with.
``gan_without:<object>`` (e.g. ``gan_without:circle``) is an optional extra stage: the
GAN recipe on renders without that object, the "retrained without the concept" reference of Ret-FD."""


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float ``(N, 3, H, W)`` in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _cosine_lr(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- judge


def train_judge(
    out: Path,
    *,
    seed: int = 0,
    steps: int = 1500,
    batch_size: int = 128,
    num_images: int = 24000,
    architecture: dict | None = None,
    name: str = "judge",
) -> dict:
    """The toy judge: object, colour, style and background heads, trained on renders of every combination.

    ``architecture`` (a judge ``config.json`` without its heads, e.g. :data:`HELDOUT_JUDGE_ARCHITECTURE`) and
    ``name`` (the folder under ``out``) train another judge with the same data, distortions and schedule: the
    ``judge_heldout`` stage.
    """
    architecture = architecture or {"width": 32}
    torch.manual_seed(seed)
    images, scenes = make_dataset(num_images, seed=seed + 1, split="all")
    x_all = to_tensor(images)
    labels = {k: torch.from_numpy(v) for k, v in attribute_labels(scenes).items()}
    model = judge_net_from_config(architecture)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for step in (bar := tqdm(range(steps), desc="judge")):
        for group in opt.param_groups:
            group["lr"] = 2e-3 * _cosine_lr(step, steps, 100)
        idx = torch.randint(len(x_all), (batch_size,), generator=gen)
        logits = model(augment_like_samples(x_all[idx], gen))
        loss = sum(F.cross_entropy(logits[k], labels[k][idx]) for k in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")

    model.eval()
    test_images, test_scenes = make_dataset(3000, seed=seed + 999, split="all")
    with torch.no_grad():
        logits = model(to_tensor(test_images))
    test_labels = attribute_labels(test_scenes)
    accuracy = {k: float((logits[k].argmax(-1).numpy() == test_labels[k]).mean()) for k in HEADS}
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    config = {**architecture, "heads": {k: list(v) for k, v in HEADS.items()}}
    (folder / "config.json").write_text(json.dumps(config))
    return {"heldout_accuracy": accuracy, "steps": steps, "architecture": architecture}


HELDOUT_JUDGE_ARCHITECTURE = {"architecture": "resnet", "widths": [24, 48, 96]}
"""The held-out judge (``toy-heldout``): a pre-activation ResNet with BatchNorm (``models.ToyJudgeResNet``), unlike
the toy judge's plain GroupNorm CNN, 0.18 M parameters (0.7 MB). The stage trains it for 800 steps (the toy judge:
1500), which already reach the toy judge's accuracy on 3000 fresh renders: object 100 %, colour 99.97 %, style
99.87 %, background 100 %."""
HELDOUT_JUDGE_SEED_OFFSET = 7_001
"""The held-out judge's seed is the build's plus this: other renders, another initialisation, other distortions."""


def augment_like_samples(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Push renders in [-1, 1] toward what generated samples look like, so the judge is not fooled by the decoder.

    Blur and noise (decoded samples are softer and grainier than renders); brightness and contrast (guidance at 7.5
    drives backgrounds to pure white, a level no render has); and faint coloured lines along the border (the VAE
    decodes the image edge with a fringe). The first judge, trained with blur and noise only, called most of the toy
    SD's crosses, whose arms come out flared, "crescent" or "star".
    """
    n = x.shape[0]

    def draw(p: float) -> torch.Tensor:  # a per-image coin with probability p
        return (torch.rand(n, 1, 1, 1, generator=gen) < p).float()

    # Elastic distortion (Simard et al. 2003): a smooth random displacement of up to about a pixel and a half, so that
    # a cross with flared arms or a star with curled points is still judged by its shape, as a person would.
    warp = draw(0.5) * (torch.rand(n, 1, 1, 1, generator=gen) * 0.1)
    field = torch.randn(n, 2, 6, 6, generator=gen)
    field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=True)
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    x = F.grid_sample(x, identity + warp.squeeze(1)[..., None] * field.permute(0, 2, 3, 1), padding_mode="border",
                      align_corners=False)  # fmt: skip
    blur = draw(0.4)
    x = blur * F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) + (1 - blur) * x
    x = x + torch.randn(x.shape, generator=gen) * 0.06 * torch.rand(n, 1, 1, 1, generator=gen)
    contrast = 0.8 + 0.45 * torch.rand(n, 1, 1, 1, generator=gen)
    brightness = 0.4 * torch.rand(n, 1, 1, 1, generator=gen) - 0.2
    jitter = draw(0.5)
    x = jitter * (contrast * x + brightness) + (1 - jitter) * x
    border = torch.zeros(1, 1, *x.shape[-2:])
    border[..., 0, :] = border[..., -1, :] = border[..., :, 0] = border[..., :, -1] = 1.0
    fringe_colour = torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1
    fringe_alpha = draw(0.3) * (0.2 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)) * border
    x = (1 - fringe_alpha) * x + fringe_alpha * fringe_colour
    return x.clamp(-1, 1)


# ---------------------------------------------------------------- VAE


def train_vae(
    out: Path,
    *,
    seed: int = 0,
    steps: int = 1500,
    batch_size: int = 64,
    perceptual_weight: float = 0.1,
    num_images: int = 16000,
) -> dict:
    """AutoencoderKL 32x32x3 -> 8x8x4: reconstruction MSE, a tiny KL, and a perceptual loss in the judge's features.

    SD's VAE is trained with L1 + LPIPS + a patch GAN; here the perceptual term is LPIPS' recipe (unit-normalised
    channel activations, squared differences, averaged) on the toy judge's convolution stages, which know what
    matters in this world: shape edges. Without it, outlined and striped circles on grey came back as crescents or
    squares in 10 % of reconstructions, a ceiling on the toy SD's circle rate.
    """
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    images, _ = make_dataset(num_images, seed=seed + 2, split="train")
    x_all = to_tensor(images)
    vae = AutoencoderKL(**VAE_CONFIG)
    judge = _judge_or_none(out)
    stages = _judge_feature_stages(judge) if judge is not None and perceptual_weight > 0 else []
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for step in (bar := tqdm(range(steps), desc="vae")):
        for group in opt.param_groups:
            group["lr"] = 1e-3 * _cosine_lr(step, steps, 50)
        x = x_all[torch.randint(len(x_all), (batch_size,), generator=gen)]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        loss = F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        if stages:
            loss = loss + perceptual_weight * _perceptual_distance(stages, recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.5f}")

    vae.eval()
    with torch.no_grad():
        x = x_all[:2000]
        latents = vae.encode(x).latent_dist.mean
        recon = torch.cat([vae.decode(chunk).sample for chunk in latents.split(500)])
        mse = F.mse_loss(recon, x).item()
    report = {"reconstruction_mse": mse, "steps": steps, "perceptual_weight": perceptual_weight if stages else 0.0}
    if judge is not None:
        # What the UNet's ceiling is: does the judge still see the object in a reconstruction?
        test_images, test_scenes = make_dataset(1000, seed=seed + 998, split="all")
        with torch.no_grad():
            x_test = to_tensor(test_images)
            recon = vae.decode(vae.encode(x_test).latent_dist.mean).sample
        predicted = judge.classify((recon.clamp(-1, 1) + 1) / 2)
        report["judge_object_accuracy_on_reconstructions"] = float(
            np.mean([p["object"] == s.object for p, s in zip(predicted, test_scenes)])
        )
    # SD's convention: latents are multiplied by 1/std so that they have unit variance.
    scaling_factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=round(scaling_factor, 5))
    # fp16 on disk for the package budget; diffusers loads it as fp32 unless asked otherwise.
    copy.deepcopy(vae).half().save_pretrained(out / "sd" / "vae", safe_serialization=True)
    report["scaling_factor"] = scaling_factor
    return report


def _judge_feature_stages(judge) -> list[torch.nn.Module]:
    """The judge's body cut into its stride stages (32x32, 16x16, 8x8, 4x4 maps), frozen, for a perceptual loss."""
    body = copy.deepcopy(judge.net.body).eval().requires_grad_(False)
    layers = list(body.children())
    return [torch.nn.Sequential(*layers[0:2]), torch.nn.Sequential(*layers[2:4]), layers[4], layers[5]]


def _perceptual_distance(stages: list[torch.nn.Module], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS' distance without learned weights: unit-normalise each position's channels, mean squared difference."""
    total = a.new_zeros(())
    for stage in stages:
        a = stage(a)
        with torch.no_grad():  # ``b`` is the target
            b = stage(b)
        total = total + (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1).mean()
    return total


# ---------------------------------------------------------------- text encoder + UNet


def _tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    return tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def train_sd(
    out: Path,
    *,
    seed: int = 0,
    steps: int = 6000,
    phase_steps: int = 3000,
    batch_size: int = 64,
    num_images: int = 30000,
    learning_rate: float = 4e-4,
    ema_decay: float = 0.999,
    resume_phase: int = 0,
) -> dict:
    """Train the text encoder and the UNet together on the toy world's captions, with CFG dropout.

    Training runs in phases of ``phase_steps``: each later phase restarts the weights from the EMA weights, with a
    fresh optimiser and learning-rate warm-up, and reseeds its random draws with ``seed + 1000·phase``. That makes
    a phase resumable from the saved (EMA) model alone: ``resume_phase=p`` loads ``out/sd`` and runs phases ``p..``
    exactly as an uninterrupted build would.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    sd_dir = out / "sd"
    if not (sd_dir / "vae" / "config.json").is_file():
        raise MissingWeightsError(
            f"the sd stage needs the toy VAE in {sd_dir / 'vae'}; build both: erasure-studio toy build --stages vae,sd"
        )
    tokenizer_dir = write_clip_tokenizer(sd_dir / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    vae = AutoencoderKL.from_pretrained(sd_dir / "vae", torch_dtype=torch.float32).eval()

    images, scenes = make_dataset(num_images, seed=seed + 3, split="train")
    # Train on the posterior means: the toy VAE's posterior noise is about a quarter of the latents' spread (its KL
    # weight is tiny), and sampling it would teach the UNet that noise too.
    with torch.no_grad():
        latents_all = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in to_tensor(images).split(500)])
    latents_all = latents_all * vae.config.scaling_factor

    if resume_phase > 0:
        unet = UNet2DConditionModel.from_pretrained(sd_dir / "unet", torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(sd_dir / "text_encoder", dtype=torch.float32)
    else:
        unet = UNet2DConditionModel(**UNET_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER_CONFIG))
    unet.train()
    text_encoder.train()
    ema_unet = copy.deepcopy(unet).eval()
    ema_text_encoder = copy.deepcopy(text_encoder).eval()
    noise_scheduler = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    params = list(unet.parameters()) + list(text_encoder.parameters())

    history, checkpoints = [], []
    judge = _judge_or_none(out)
    start = resume_phase * phase_steps
    for step in (bar := tqdm(range(start, steps), desc="toy sd (text encoder + unet)", initial=start, total=steps)):
        if step == start or step % phase_steps == 0:
            phase = step // phase_steps
            if step != start:  # restart from the averaged weights
                unet.load_state_dict(ema_unet.state_dict())
                text_encoder.load_state_dict(ema_text_encoder.state_dict())
            opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=1e-2)
            rng = np.random.default_rng(seed + 1000 * phase)
            gen = torch.Generator().manual_seed(seed + 1000 * phase)
        for group in opt.param_groups:
            # Constant after warm-up: the EMA averages the late noise, and shapes keep improving to the end.
            group["lr"] = learning_rate * min(1.0, (step % phase_steps + 1) / 200)
        idx = torch.randint(num_images, (batch_size,), generator=gen)
        latents = latents_all[idx]
        # Classifier-free guidance dropout: 10 % of captions are empty.
        prompts = ["" if rng.random() < 0.1 else caption(scenes[i], rng) for i in idx.tolist()]
        encoder_hidden_states = text_encoder(_tokenize(tokenizer, prompts))[0]
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        pred = unet(noisy, timesteps, encoder_hidden_states).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # Warm the EMA up so early weights do not linger (decay ramps to ``ema_decay``).
        decay = min(ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text_encoder, text_encoder, decay)
        if step % 20 == 0:
            history.append({"step": step, "loss": loss.item()})
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if judge is not None and (step + 1) % 1000 == 0:
            probe = _probe_accuracy(vae, ema_text_encoder, tokenizer, ema_unet, judge)
            checkpoints.append({"step": step + 1, **probe})
            logger.info("toy sd step %d: %s", step + 1, probe)
        if (step + 1) % phase_steps == 0 and step + 1 < steps:
            # Save at every phase boundary, so that an interrupted build resumes with ``resume_phase``.
            _save_half(_toy_pipeline(vae, ema_text_encoder, tokenizer, ema_unet), sd_dir)

    _save_half(_toy_pipeline(vae, ema_text_encoder, tokenizer, ema_unet), sd_dir)
    return {
        "steps": steps,
        "phase_steps": phase_steps,
        "resumed_at_phase": resume_phase,
        "final_loss": float(np.mean([h["loss"] for h in history[-20:]])),
        "probes": checkpoints,
        "loss": history,
    }


def _toy_pipeline(vae, text_encoder, tokenizer, unet):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _judge_or_none(out: Path):
    """The judge of this build (trained first), to probe sample quality during training; None if absent."""
    try:
        from .judge import ToyJudge

        return ToyJudge(out / "judge") if (out / "judge" / "config.json").is_file() else None
    except Exception:  # pragma: no cover - the probe is a diagnostic only
        return None


@torch.no_grad()
def _probe_accuracy(vae, text_encoder, tokenizer, unet, judge, guidance_scale: float = 5.0) -> dict[str, float]:
    """Object and colour accuracy of 48 EMA samples ("a {colour} {object}", 20 DDIM steps): a training diagnostic."""
    pipe = _toy_pipeline(vae, text_encoder, tokenizer, unet)
    pipe.set_progress_bar_config(disable=True)
    accuracy = sample_accuracy(pipe, judge, seeds=1, guidance_scale=guidance_scale, num_inference_steps=20)
    return {"object": accuracy["object"], "colour": accuracy["colour"]}


def _save_half(pipe, folder: Path) -> None:
    """Save the pipeline with UNet, VAE and text encoder weights in fp16 (the package size budget), loading as fp32.

    diffusers models load in fp32 unless asked otherwise; for transformers, ``dtype: float32`` in the config keeps
    ``from_pretrained`` in fp32 too. Rounding the trained weights to fp16 changes no sample measurably (the
    benchmarks run on the shipped weights).
    """
    pipe.save_pretrained(folder, safe_serialization=True)
    copy.deepcopy(pipe.unet).half().save_pretrained(folder / "unet", safe_serialization=True)
    copy.deepcopy(pipe.vae).half().save_pretrained(folder / "vae", safe_serialization=True)
    _save_half_transformers(pipe.text_encoder, folder / "text_encoder")
    _drop_fast_tokenizer_file(folder / "tokenizer")


def _drop_fast_tokenizer_file(folder: Path) -> None:
    """Remove ``tokenizer.json`` (3.5 MB): transformers rebuilds it from vocab.json + merges.txt, token for token."""
    (folder / "tokenizer.json").unlink(missing_ok=True)


def _save_half_transformers(model, folder: Path) -> None:
    """save_pretrained with fp16 weights and ``dtype: float32`` in the config, so ``from_pretrained`` loads fp32."""
    copy.deepcopy(model).half().save_pretrained(folder, safe_serialization=True)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    for part in (config, config.get("text_config"), config.get("vision_config")):
        if isinstance(part, dict):
            part["dtype"] = "float32"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


# ---------------------------------------------------------------- CLIP


def _caption_constraints(text: str, scene) -> dict[str, str]:
    """The attributes a caption pins down: its object, plus the colour, style and background it happens to name.

    "a red star" says nothing about style or background, so every red star in a batch is a true match for it.
    """
    named = {canonical(word) for word in re.findall(r"[a-z]+", text.lower())}
    pinned = {"object": scene.object}
    pinned.update(
        {kind: getattr(scene, kind) for kind in ("colour", "style", "background") if getattr(scene, kind) in named}
    )
    return pinned


def train_clip(
    out: Path, *, seed: int = 0, steps: int = 3000, batch_size: int = 256, num_images: int = 100_000
) -> dict:
    """A ``transformers.CLIPModel`` trained contrastively on renders and their captions.

    The loss is CLIP's symmetric InfoNCE with soft targets: a caption's positives are every image in the batch that
    agrees with what the caption names (:func:`_caption_constraints`), so that "a red star" is not pushed away from
    the other red stars of the batch. Renders are cheap, so the vision tower sees many (100k, each about 8 times,
    half of them flipped): the first build's 20k renders, seen 25 times each, were recognised at 98 % but fresh ones
    at 89 %.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(seed)
    clip_dir = out / "clip"
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(clip_dir))
    config = CLIPConfig(
        text_config=CLIP_TEXT_CONFIG, vision_config=CLIP_VISION_CONFIG, projection_dim=CLIP_PROJECTION_DIM
    )
    model = CLIPModel(config)
    images, scenes = make_dataset(num_images, seed=seed + 4, split="train")
    attributes = {
        kind: torch.tensor([values.index(getattr(s, kind)) for s in scenes]) for kind, values in HEADS.items()
    }
    mean = torch.tensor(CLIP_IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_IMAGE_STD).view(1, 3, 1, 1)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)  # uint8; normalised per batch to keep memory small
    del images
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in (bar := tqdm(range(steps), desc="toy clip")):
        for group in opt.param_groups:
            group["lr"] = 5e-4 * _cosine_lr(step, steps, 100)
        idx = torch.randint(len(pixels), (batch_size,), generator=gen)
        batch = (pixels[idx].float() / 255.0 - mean) / std
        flip = torch.rand(batch_size, generator=gen) < 0.5
        batch[flip] = batch[flip].flip(-1)
        captions, matches = [], torch.ones(batch_size, batch_size)
        for row, i in enumerate(idx.tolist()):
            captions.append(caption(scenes[i], rng))
            for kind, value in _caption_constraints(captions[-1], scenes[i]).items():
                matches[row] *= (attributes[kind][idx] == HEADS[kind].index(value)).float()
        text = tokenizer(captions, padding=True, return_tensors="pt")
        output = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=batch)
        # matches[t, i]: caption t is true of image i (the diagonal always is).
        text_targets = matches / matches.sum(1, keepdim=True)
        image_targets = matches.T / matches.T.sum(1, keepdim=True)
        loss = 0.5 * (
            torch.sum(-image_targets * F.log_softmax(output.logits_per_image, -1), -1).mean()
            + torch.sum(-text_targets * F.log_softmax(output.logits_per_text, -1), -1).mean()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            losses.append({"step": step, "loss": loss.item()})

    model.eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            do_resize=True,
            size={"shortest_edge": 32},
            do_center_crop=True,
            crop_size={"height": 32, "width": 32},
            image_mean=list(CLIP_IMAGE_MEAN),
            image_std=list(CLIP_IMAGE_STD),
        ),
        tokenizer=tokenizer,
    )
    _save_half_transformers(model, clip_dir)
    processor.save_pretrained(clip_dir)
    _drop_fast_tokenizer_file(clip_dir)
    return {"steps": steps, "num_images": num_images, "final_loss": loss.item(), "loss": losses}


# ---------------------------------------------------------------- driver


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_checksums(folder: Path) -> Path:
    """Write ``CHECKSUMS.sha256`` for every file under ``folder`` (``sha256sum -c`` format: ``sha256  path``)."""
    lines = [
        f"{_digest(path)}  {path.relative_to(folder).as_posix()}"
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "CHECKSUMS.sha256")
    ]
    target = folder / "CHECKSUMS.sha256"
    target.write_text("\n".join(lines) + "\n")
    return target


def verify_checksums(folder: str | Path) -> list[str]:
    """Check every file of ``folder`` against its ``CHECKSUMS.sha256``.

    Returns:
        `list[str]`: one line per problem (a changed, missing or unlisted file); empty when the folder is intact.
    """
    folder = Path(folder)
    listed = {}
    for line in (folder / "CHECKSUMS.sha256").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    problems = []
    for name, digest in listed.items():
        if not (folder / name).is_file():
            problems.append(f"{name}: missing")
        elif _digest(folder / name) != digest:
            problems.append(f"{name}: changed")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    problems += [f"{name}: not listed" for name in sorted(present - set(listed) - {"CHECKSUMS.sha256"})]
    return problems


def build(
    output_dir: str | Path,
    *,
    stages: tuple[str, ...] = STAGES,
    seed: int = 0,
    stage_kwargs: dict[str, dict] | None = None,
) -> dict:
    """Build the requested stages into ``output_dir`` and return a report with durations and quality numbers.

    Args:
        output_dir (`str` or `Path`): the assets folder (``pipelines/toy/assets`` for the shipped world).
        stages (`tuple[str, ...]`): any of :data:`STAGES`, in order, and ``"gan_without:OBJECT"``.
        seed (`int`, defaults to 0): seed of every stage.
        stage_kwargs (`dict[str, dict]`, *optional*): keyword overrides per stage, e.g. ``{"sd": {"steps": 2}}``
            (``train_judge``, ``train_vae``, ``train_sd``, ``train_onestep``, ``train_clip``, ``train_gan``); the
            defaults are the shipped recipe.
    """
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report_path = out / "build_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for stage in stages:
        overrides = (stage_kwargs or {}).get(stage, {})
        start = time.perf_counter()
        if stage == "judge":
            result = train_judge(out, seed=seed, **overrides)
        elif stage == "judge_heldout":
            # Another seed and architecture, so that its verdicts on what was optimised against the toy judge count.
            heldout = {"architecture": HELDOUT_JUDGE_ARCHITECTURE, "name": "judge_heldout", "steps": 800, **overrides}
            result = train_judge(out, seed=seed + HELDOUT_JUDGE_SEED_OFFSET, **heldout)
        elif stage == "vae":
            result = train_vae(out, seed=seed, **overrides)
        elif stage == "sd":
            result = train_sd(out, seed=seed, **overrides)
        elif stage == "onestep":
            from .build_onestep import train_onestep

            result = train_onestep(out, seed=seed, **overrides)
        elif stage == "clip":
            result = train_clip(out, seed=seed, **overrides)
        elif stage == "gan":
            from .build_gan import train_gan

            result = train_gan(out, seed=seed, **overrides)
        elif stage.startswith("gan_without:"):
            from .build_gan import train_gan

            result = train_gan(out, seed=seed, exclude_object=stage.split(":", 1)[1], **overrides)
        else:
            raise ValueError(f"unknown toy build stage {stage!r}; choose from {', '.join(STAGES)}")
        result["seconds"] = round(time.perf_counter() - start, 1)
        report[stage] = result
        report_path.write_text(json.dumps(report, indent=2))
        logger.info("toy build: %s done in %.0f s", stage, result["seconds"])
    write_checksums(out)
    return report
