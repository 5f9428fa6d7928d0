"""The toy world's one-step generator: the toy SD distilled into one UNet call (``toy build --stages onestep``).

The toy world's answer to SiD-LSG and SD-Turbo, and the generator that SFD starts from on the toy world, as the
official SD recipe starts from SiD-LSG. Two stages, on 2 CPU cores:

1. **Regression initialisation** (Luhman & Luhman, "Knowledge Distillation in Iterative Generative Models", 2021):
   the teacher samples pairs (z, x0) with its deterministic DDIM sampler from the caption grammar's prompts; the
   generator, initialised from the teacher's UNet in the one-step parameterisation of ``pipelines.one_step``
   (G(z, c) = x̂0 at t_init), regresses x0 from (z, c). Cheap, and it lands near the teacher's ODE map.
2. **Score identity Distillation** (Zhou et al., ICML 2024), the loss SFD builds on: a fake score network f_ψ,
   initialised from the teacher, learns the generator's distribution (ε-MSE on its samples, 10 % prompt dropout);
   the generator minimises the SiD loss between the teacher's and f_ψ's guided x̂0 (α = 1, CFG 4.5, t in
   [20, 980), as SiD-LSG). Only the generator ships.

Measured by the build's probe (the toy judge's object and colour accuracy over "a {colour} {object}", 8 objects x 6
colours x 2 seeds; the teacher's 25-step samples: 100 % / 100 %), in ``build_report.json`` under ``onestep``:

| stage | object | colour |
|---|---|---|
| the teacher's UNet as a one-step generator (x̂0 at t_init = 625), no training | 88.5 % | 52.1 % |
| regression, 500 / 1000 / 1500 steps (batch 64) | 96.9 / 99.0 / 97.9 % | 100 % |
| then SiD, 400 steps (batch 16) | 100 % | 95.8 % |

The shipped build took 25 min on 2 cores (teacher pairs 6 min while another job shared the cores, regression 14
min, SiD 5 min). Only this route was run at length: the regression start makes the generator good before SiD
begins, so SiD refines rather than discovers; plain SiD from the teacher's UNet (the first row) was only smoke-tested.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import MissingWeightsError
from ..one_step import ONE_STEP_CONFIG, guided_x0, one_step_from_teacher, one_step_x0, sid_generator_loss
from ..sd import encode_prompts
from .quality import sample_accuracy
from .world import COLOURS, OBJECTS, WORDS, caption, prompt_for, sample_scene

logger = logging.getLogger(__name__)

INIT_TIMESTEP = 625
"""t_init, as SiD-LSG and SFD's SD setting."""


def distillation_prompts(n: int, seed: int) -> list[str]:
    """Prompts the generator learns: half the caption grammar's sentences, half "a {colour} {object}" (any word)."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(n):
        if i % 2 == 0:
            prompts.append(caption(sample_scene(rng), rng))
        else:
            obj = OBJECTS[rng.integers(len(OBJECTS))]
            word = WORDS[obj][rng.integers(len(WORDS[obj]))]
            prompts.append(prompt_for(obj, COLOURS[rng.integers(len(COLOURS))], word=word))
    return prompts


@torch.no_grad()
def teacher_pairs(
    teacher, prompts: list[str], *, seed: int, num_inference_steps: int, guidance_scale: float, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, x0) pairs: the teacher's DDIM samples (clean latents) from seeded noise z, one per prompt."""
    size, channels = teacher.unet.config.sample_size, teacher.unet.config.in_channels
    noise = torch.randn(len(prompts), channels, size, size, generator=torch.Generator().manual_seed(seed))
    latents = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="teacher pairs", leave=False):
        chunk = prompts[start : start + batch_size]
        out = teacher(
            chunk,
            latents=noise[start : start + len(chunk)].clone(),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            output_type="latent",
        )
        latents.append(out.images)
    return noise, torch.cat(latents)


def probe(pipe, judge) -> dict[str, float]:
    """The toy judge's object and colour accuracy of 96 samples (every object x colour, 2 seeds)."""
    accuracy = sample_accuracy(pipe, judge, seeds=2)
    return {"object": round(accuracy["object"], 4), "colour": round(accuracy["colour"], 4)}


def train_onestep(
    out: Path,
    *,
    seed: int = 0,
    init_timestep: int = INIT_TIMESTEP,
    num_pairs: int = 4096,
    pair_steps: int = 10,
    pair_guidance: float = 7.5,
    regression_steps: int = 1500,
    regression_batch: int = 64,
    regression_lr: float = 1e-4,
    sid_steps: int = 400,
    sid_batch: int = 16,
    generator_lr: float = 1e-5,
    fake_lr: float = 3e-5,
    sid_guidance: float = 4.5,
    alpha: float = 1.0,
    t_range: tuple[int, int] = (20, 980),
    probe_every: int = 500,
) -> dict:
    """Distil the toy SD in ``out/sd`` into a one-step generator saved to ``out/onestep``; returns the report."""
    from diffusers import StableDiffusionPipeline

    if not (out / "sd" / "unet" / "config.json").is_file():
        raise MissingWeightsError(f"the onestep stage needs the toy SD in {out / 'sd'}; build it first (--stages sd)")
    torch.manual_seed(seed)
    teacher = StableDiffusionPipeline.from_pretrained(out / "sd", safety_checker=None, requires_safety_checker=False)
    teacher.set_progress_bar_config(disable=True)
    teacher.unet.requires_grad_(False).eval()
    teacher.text_encoder.requires_grad_(False).eval()
    from .judge import ToyJudge

    judge = ToyJudge(out / "judge")
    alphas_cumprod = teacher.scheduler.alphas_cumprod
    report: dict = {"init_timestep": init_timestep, "probes": []}
    report["teacher_25_steps"] = {
        k: round(v, 4)
        for k, v in sample_accuracy(teacher, judge, seeds=2, num_inference_steps=25).items()
        if k != "samples"
    }

    generator = copy.deepcopy(teacher.unet).float().train().requires_grad_(True)
    pipe = one_step_from_teacher(teacher, generator, init_timestep)

    def record(stage: str, step: int, **extra) -> None:
        generator.eval()
        row = {"stage": stage, "step": step, **probe(pipe, judge), **extra}
        generator.train()
        report["probes"].append(row)
        logger.info("onestep probe %s", row)
        print("onestep probe", json.dumps(row), flush=True)

    record("init", 0)

    # 1. Regression on the teacher's DDIM map z -> x0.
    start = time.perf_counter()
    prompts = distillation_prompts(num_pairs, seed)
    noise, targets = teacher_pairs(
        teacher, prompts, seed=seed, num_inference_steps=pair_steps, guidance_scale=pair_guidance
    )
    with torch.no_grad():
        conds = torch.cat(
            [
                encode_prompts(teacher.tokenizer, teacher.text_encoder, prompts[i : i + 512])
                for i in range(0, num_pairs, 512)
            ]
        )
    report["pairs_seconds"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    optimizer = torch.optim.Adam(generator.parameters(), lr=regression_lr)
    gen = torch.Generator().manual_seed(seed + 1)
    for step in tqdm(range(1, regression_steps + 1), desc="onestep regression", leave=False):
        idx = torch.randint(num_pairs, (regression_batch,), generator=gen)
        pred = one_step_x0(generator, noise[idx], conds[idx], init_timestep, alphas_cumprod)
        loss = F.mse_loss(pred, targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % probe_every == 0 or step == regression_steps:
            record("regression", step, loss=round(loss.item(), 5))
    report["regression_seconds"] = round(time.perf_counter() - start, 1)

    # 2. SiD refinement: fake score step, then generator step (SFD's loop with the forget terms at zero).
    start = time.perf_counter()
    fake = copy.deepcopy(teacher.unet).float().train()
    fake_opt = torch.optim.Adam(fake.parameters(), lr=fake_lr, betas=(0.0, 0.999))
    gen_opt = torch.optim.Adam(generator.parameters(), lr=generator_lr, betas=(0.0, 0.999))
    null = encode_prompts(teacher.tokenizer, teacher.text_encoder, [""]).detach()
    for step in tqdm(range(1, sid_steps + 1), desc="onestep SiD", leave=False):
        idx = torch.randint(num_pairs, (sid_batch,), generator=gen)
        cond, uncond = conds[idx], null.expand(sid_batch, -1, -1)
        z = torch.randn(noise[idx].shape, generator=gen)
        # Fake-score step: ε-MSE on the generator's samples, 10 % of prompts dropped for CFG.
        fake.requires_grad_(True)
        with torch.no_grad():
            x_g = one_step_x0(generator, z, cond, init_timestep, alphas_cumprod)
        t = torch.randint(t_range[0], t_range[1], (sid_batch,), generator=gen)
        eps = torch.randn(x_g.shape, generator=gen)
        x_t = teacher.scheduler.add_noise(x_g, eps, t)
        drop = (torch.rand(sid_batch, generator=gen) < 0.1).view(-1, 1, 1)
        fake_loss = F.mse_loss(fake(x_t, t, encoder_hidden_states=torch.where(drop, uncond, cond)).sample, eps)
        fake_opt.zero_grad(set_to_none=True)
        fake_loss.backward()
        torch.nn.utils.clip_grad_value_(fake.parameters(), 1.0)
        fake_opt.step()
        # Generator step: the SiD loss through both networks (their weights frozen here).
        fake.requires_grad_(False)
        x_g = one_step_x0(generator, z, cond, init_timestep, alphas_cumprod)
        t = torch.randint(t_range[0], t_range[1], (sid_batch,), generator=gen)
        eps = torch.randn(x_g.shape, generator=gen)
        x_t = teacher.scheduler.add_noise(x_g, eps, t)
        real_x0 = guided_x0(teacher.unet, x_t, t, cond, uncond, sid_guidance, alphas_cumprod)
        fake_x0 = guided_x0(fake, x_t, t, cond, uncond, sid_guidance, alphas_cumprod)
        gen_loss = sid_generator_loss(x_g, real_x0, fake_x0, alpha).mean()
        gen_opt.zero_grad(set_to_none=True)
        gen_loss.backward()
        torch.nn.utils.clip_grad_value_(generator.parameters(), 1.0)
        gen_opt.step()
        if step % probe_every == 0 or step == sid_steps:
            record("sid", step, loss_fake=round(fake_loss.item(), 5), loss_generator=round(gen_loss.item(), 5))
    report["sid_seconds"] = round(time.perf_counter() - start, 1)

    folder = out / "onestep"
    folder.mkdir(parents=True, exist_ok=True)
    generator.eval().requires_grad_(False)
    copy.deepcopy(generator).half().save_pretrained(folder / "generator", safe_serialization=True)
    recipe = {
        "num_pairs": num_pairs,
        "pair_steps": pair_steps,
        "regression_steps": regression_steps,
        "sid_steps": sid_steps,
        "generator_lr": generator_lr,
        "fake_lr": fake_lr,
        "sid_guidance": sid_guidance,
        "alpha": alpha,
        "t_range": list(t_range),
    }
    (folder / ONE_STEP_CONFIG).write_text(
        json.dumps({"init_timestep": init_timestep, "teacher": "toy", "recipe": recipe}, indent=2) + "\n"
    )
    report["final"] = report["probes"][-1]
    return report
