"""SFD: Score Forgetting Distillation (Chen, Zhang, Zhou, Chen, Zhou; ICLR 2025).

Paper: https://arxiv.org/abs/2409.11219 . Official preview code: https://github.com/tqch/score-forgetting-distillation
(``SD/training/training_loop.py`` and ``SD/run_sfd.sh`` for Stable Diffusion, ``DDPM/functions/losses.py`` for the
losses; read at the head of ``main``, the commit "Attempt to fix Issue #2: add missing arguments").

SFD distils a text-to-image diffusion model (the teacher f_p, frozen) into a **one-step generator** G_θ with Score
identity Distillation (SiD), and adds a forgetting term. A fake score network f_ψ, initialised from the teacher,
tracks the generator's distribution. With G_θ(z, c) the teacher's x̂0 parameterisation at t_init
(``pipelines.one_step.one_step_x0``), x_t = √ᾱ_t·x_g + √(1−ᾱ_t)·ε and f(x_t; c) a network's guided x̂0, each
iteration runs:

1. fake-score step (ε-MSE on the generator's samples, retain and forget prompts alike)::

       L_ψ = ‖ε − ε_ψ(x_t, t, c)‖²  +  λ_sg,f · ‖ε − ε_ψ(x_t^f, t, c_f)‖²,       x^f = G_θ(z, c_f)

2. generator step, the SiD loss (``pipelines.one_step.sid_generator_loss``) with ω = mean|f_p − x_g|::

       L_SiD(x_g; c_p, c_ψ) = (f_p(x_t; c_p) − f_ψ(x_t; c_ψ))ᵀ [(f_p(x_t; c_p) − x_g) − α (f_p − f_ψ)] / ω
       L_G = λ_g,r · L_SiD(G_θ(z, c); c, c)  +  λ_g,f · L_SiD(G_θ(z, c_f); c_p = c_o, c_ψ = c_f)

   The forget branch asks the teacher what the *override* concept c_o would look like at x_t, while the fake
   network answers for the forget concept c_f: the generator's forget-conditioned samples are pulled to the
   teacher's override distribution. No real image is used anywhere.
3. an EMA of θ (off by default, as the official ``--ema 0``).

The result is a generator artifact (``generator/``, a ``UNet2DConditionModel`` folder, plus t_init in the manifest);
``pipelines.apply_artifact`` returns a ``pipelines.one_step.OneStepPipeline`` that samples in one call. The
generator starts from a one-step generator already distilled without forgetting (``initial_generator``; the
official SD recipe starts from SiD-LSG, the toy world from ``toy build --stages onestep``) or, with
``init_from_teacher``, from the teacher's UNet.

Prompts: the forget prompts name the concept; each override prompt is its forget prompt with the concept replaced
by c_o (the official ``ForgetPromptDataset`` regex replacement); the retain prompts (c) are the toy world's other
objects, or on real models our everyday-object prompts (the official run uses a LAION-Aesthetics 6+ prompt list,
which is not shipped), or a file.

Deviations and fixes of the official preview code:

- The preview's README calls a script it does not ship (``run_df2_stage2.sh``) and a prompt file it does not ship
  (``prompts/nudity_prompts_val.txt``); here every input is a config field, validated before training.
- Its training needs ``torchrun`` with an NCCL process group even on one GPU and EDM's ``dnnlib`` pickles for the
  SiD-LSG weights; here the generator is a diffusers UNet folder (SiD-LSG converted once by the user), loaded with
  safetensors, and the loop runs on any device.
- The official SD loop filters NaN samples out of the batch silently; here a non-finite loss stops the run with an
  error that names the step, rather than training on a shrinking batch.
- Negative prompts: the official flags ``USE_NEG=1,1,1`` switch the CFG unconditional prompt of fake training, fake
  evaluation and real evaluation separately; ``negative_prompt`` here applies to all three when given.
- Duration is counted in optimisation steps (``max_train_steps`` x ``batch_size`` images) rather than in kimg.

An addition (not in the paper; off by default): ``retain_anchor_weight`` λ_a adds a paired anchor to the retain
branch, λ_a·‖G_θ(z, c) − G_θ0(z, c)‖² (per sample, summed like the SiD loss), θ0 the initial generator held frozen.
SiD's retain term only pushes back once f_ψ has learned where G_θ went (f_ψ starts as the teacher, so
f_p − f_ψ = 0 at first), while the forget term pulls from the first step; on the toy world that lag let the forget
branch take a neighbouring object down by up to 73 points, and even the control without forgetting drifted by 17-19
(the toy preset's comment lists the runs). The anchor holds the retain samples where the one-step generator drew
them from the first step. The toy preset uses λ_a = 10; ``configs/sfd/`` (the official runs) leave it at 0.
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from pipelines.artifacts import base_identity
from pipelines.data import object_retain_prompts
from pipelines.errors import ConfigError
from pipelines.one_step import (
    DEFAULT_INIT_TIMESTEP,
    guided_x0,
    is_one_step,
    load_one_step,
    one_step_x0,
    sid_generator_loss,
)
from pipelines.sd import encode_prompts, execution_device, frozen_copy, guided_noise, is_toy_model
from pipelines.training import ema_update

from .base import (
    EraseConfig,
    EraseData,
    EraseMethod,
    EraseResult,
    RunMeter,
    StepCallback,
    adam,
    frozen_dtype,
    notify,
    register,
)

# Forget prompts on real models when no file is given: the concept in a few everyday framings.
FORGET_TEMPLATES = (
    "{}",
    "a photo of {}",
    "a portrait of {}",
    "a close-up photo of {}",
    "a painting of {}",
    "{} in a city street",
    "a picture of {} smiling",
    "an old photo of {}",
)


@dataclass
class SFDConfig(EraseConfig):
    """Config of :class:`SFD`. Defaults are the official SD v1.5 run (``SD/run_sfd.sh``); ``presets["toy"]`` fits
    the toy world.

    Args:
        override (`str`, *optional*): c_o, the safe concept whose teacher score the forget branch matches ("a middle
            aged man" for a celebrity). Required on real models; the toy world's replacement value otherwise.
        initial_generator (`str`, *optional*): θ's start, a one-step generator folder (``OneStepPipeline``
            ``save_pretrained`` output, or ``generator/`` with ``one_step.json``; ``"toy"`` for the toy world's).
        init_from_teacher (`bool`, defaults to `False`): start θ from the teacher's UNet instead (slow to converge).
        init_timestep (`int`, defaults to 625): t_init of the generator (when not read from the initial generator).
        alpha (`float`, defaults to 1.0): α of the SiD loss.
        t_min, t_max (`int`): the range t ~ U[t_min, t_max) of both steps.
        retain_weight, forget_weight (`float`): λ_g,r and λ_g,f of the generator loss.
        retain_anchor_weight (`float`, defaults to 0.0): λ_a of the retain anchor (module docstring; not in the paper).
        fake_forget_weight (`float`): λ_sg,f of the fake-score loss.
        guidance_scale_fake_train, guidance_scale_fake, guidance_scale_real (`float`): the CFG scales of fake-score
            training, of f_ψ in the generator loss and of f_p (official ``cfg_train_fake``, ``cfg_eval_fake``,
            ``cfg_eval_real``).
        use_8bit_adam (`bool`, defaults to `False`): bitsandbytes' 8-bit Adam for θ and ψ (the moments at a
            quarter of fp32's memory). Even with it and ``gradient_checkpointing``, one fp32 iteration on SD v1.x
            needs more than a 24 GB CPU machine has (``benchmarks/sfd_sd14_step.py``); the official run is fp16 on
            a GPU.
    """

    method = "sfd"
    # Levers tried on the toy preset (issue 26: the leaderboard's SFD rows moved another object by up to 50 points at
    # 12 samples per object). At 2 threads, 48 samples per object (8 seeds x 6 colours), forget 0 % in every run; the
    # largest drop of another object below the teacher (which draws every object at 100 %; the one-step generator SFD
    # starts from draws circles at 83 %). At heart seeds 0 / 1 / 2 and star seeds 0 / 1 / 2: the preset (λ_g,r 1,
    # the official weight) 35 / 6 / 31 and 2 / 21 / 8 points (crosses after heart at seed 0: 65 %); λ_g,r 4: 8 / 15 /
    # 15 and 21 / 8 / 31 (carry-over: cross 48, crescent 38, diamond 6). At heart seeds 0 / 2 and star seed 1:
    # λ_g,r 2: 19 / 6 / 10; λ_g,f 0.5: 10 / 17 / 31; 300 steps at half the learning rate: 17 / 62 / 73. At heart
    # seeds 0 / 2 and star seed 2: 75 steps 6 / 17 / 29; 100 steps 19 / 69 / 29. Which neighbour the forgetting drags
    # along (crescents, crosses) turns on the erasure seed more than on any weight or length tried, so the preset
    # keeps the official weights. A fake-score warm-up (a probe, not kept: f_ψ alone for 50 iterations before the
    # preset's 150 generator steps, since f_ψ starts as the teacher rather than as G_θ's score),
    # at heart seeds 0 / 2 and star seeds 1 / 2: 2 / 19 / 25 / 23 points (the preset: 35 / 31 / 21 / 8); against the
    # one-step generator it starts from, 15 / 19 / 23 / 19. It moves the damage again without removing it.
    # On another machine of the pool (2026-12-07, same protocol; the teacher draws every object at 100 %, the one-step
    # generator SFD starts from circles at 83 %): the preset at heart seed 0 73 points (crosses 27 %). f_ψ at 3e-4
    # (it must follow G_θ before SiD's retain term can push back): heart seeds 0 / 2 and star seeds 1 / 2 8 / 27 /
    # 35 / 17; an EMA of θ (0.95) 71 at heart seed 0; batch 16 48 there; the generator at lr 2e-5 8 / 10 at heart
    # seeds 0 / 2, 29 at star seed 1. The control without forgetting (λ_g,f = 0) drifts too: 19 and 17 at star
    # seed 1 and heart seed 2, so SiD's retain term alone does not hold the rest at this learning rate. The retain
    # anchor λ_a = 10 (module docstring; not in the paper): forget 0-2 % and the largest drop 8 / 10 / 12.5 at heart
    # seeds 0 / 1 / 2 and 15 / 12.5 / 12.5 at star seeds 0 / 1 / 2, circles at five of six; the one-step generator
    # it starts from draws circles at 83 %, and against it no object falls by more than 8.3 points. Carry-over
    # (seed 0): cross 0 % / 15, crescent 27 % / 8, diamond 0 % / 15 (the preset: 42 / 0 / 42 at 12 samples). Kept.
    # λ_a = 3 at star / heart seed 0 (two points only, not adopted): forget 0 %, circles 90 % at both (10.4 points).
    presets = {
        "toy": {
            "initial_generator": "toy",
            "max_train_steps": 150,
            "learning_rate": 5e-5,
            "fake_learning_rate": 1e-4,
            "batch_size": 8,
            "guidance_scale_fake_train": 1.0,
            "guidance_scale_fake": 4.5,
            "guidance_scale_real": 4.5,
            "forget_weight": 1.0,
            "fake_forget_weight": 1.0,
            "retain_anchor_weight": 10.0,
        }
    }

    max_train_steps: int = field(
        default=12500,
        metadata={
            "help": "Iterations (fake-score + generator step); 12500 x batch 8 = the README's 100-kimg snapshot."
        },
    )
    learning_rate: float = field(default=1e-6, metadata={"help": "Generator Adam learning rate (official glr 1e-6)."})
    fake_learning_rate: float = field(
        default=3e-6, metadata={"help": "Fake score network Adam learning rate (official lr 3e-6)."}
    )
    adam_beta1: float = field(default=0.0, metadata={"help": "Adam β1 of both optimisers (official 0)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam β2 of both optimisers (official 0.999)."})
    batch_size: int = field(default=8, metadata={"help": "Generator samples per step, per branch (official 8)."})
    override: str | None = field(
        default=None,
        metadata={"help": "c_o: the safe concept the forget prompts are pulled to (required on real models)."},
    )
    initial_generator: str | None = field(
        default=None,
        metadata={"help": "θ's start: a one-step generator folder, or 'toy' (official: SiD-LSG for SD v1.5)."},
    )
    init_from_teacher: bool = field(
        default=False, metadata={"help": "Start θ from the teacher's UNet instead of a one-step generator."}
    )
    init_timestep: int = field(
        default=DEFAULT_INIT_TIMESTEP,
        metadata={"help": "t_init of a generator started from the teacher (official 625)."},
    )
    alpha: float = field(default=1.0, metadata={"help": "α of the SiD loss (SD: 1; CIFAR-10: 1.2)."})
    t_min: int = field(default=20, metadata={"help": "Smallest t of the fake-score and generator steps (SD: 20)."})
    t_max: int = field(default=980, metadata={"help": "t is drawn from [t_min, t_max) (SD: 980)."})
    retain_weight: float = field(default=1.0, metadata={"help": "λ_g,r: weight of the retain SiD term."})
    retain_anchor_weight: float = field(
        default=0.0,
        metadata={
            "help": "λ_a: weight of ‖G_θ(z, c) − G_θ0(z, c)‖² on the retain prompts, θ0 the initial generator "
            "(not in the paper; 0 = official)."
        },
    )
    forget_weight: float = field(
        default=1.0, metadata={"help": "λ_g,f: weight of the forget SiD term (0: no forgetting)."}
    )
    fake_forget_weight: float = field(
        default=1.0, metadata={"help": "λ_sg,f: weight of the forget samples in the fake-score loss."}
    )
    guidance_scale_fake_train: float = field(
        default=4.5, metadata={"help": "CFG of f_ψ while it trains (official cfg_train_fake 4.5)."}
    )
    guidance_scale_fake: float = field(
        default=4.5, metadata={"help": "CFG of f_ψ in the generator loss (official cfg_eval_fake 4.5)."}
    )
    guidance_scale_real: float = field(
        default=4.5, metadata={"help": "CFG of the teacher f_p in the generator loss (official cfg_eval_real 4.5)."}
    )
    prompt_dropout: float = field(
        default=0.1, metadata={"help": "Fraction of fake-score prompts replaced by the empty prompt (official 0.1)."}
    )
    negative_prompt: str | None = field(
        default=None,
        metadata={"help": "Replaces the empty prompt as CFG's unconditional branch (nudity: NSFW words)."},
    )
    forget_prompts_file: str | None = field(
        default=None, metadata={"help": "Forget prompts, one per line, each naming the concept."}
    )
    retain_prompts_file: str | None = field(
        default=None,
        metadata={"help": "Retain prompts, one per line (default: everyday objects; toy: other objects)."},
    )
    ema_decay: float = field(
        default=0.0, metadata={"help": "EMA decay of θ; 0 keeps the raw weights (official --ema 0)."}
    )
    max_grad_value: float = field(
        default=1.0, metadata={"help": "Gradient value clipping of both networks (official 1)."}
    )
    use_8bit_adam: bool = field(
        default=False,
        metadata={"help": "bitsandbytes' 8-bit Adam for both networks (needs bitsandbytes): moments at a quarter."},
    )

    def validate(self) -> None:
        super().validate()
        for name in ("batch_size", "fake_learning_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.init_timestep < 1000:
            raise ConfigError(f"init_timestep must be in (0, 1000), got {self.init_timestep}")
        if not 0 <= self.t_min < self.t_max <= 1000:
            raise ConfigError(f"need 0 <= t_min < t_max <= 1000, got t_min={self.t_min}, t_max={self.t_max}")
        for name in (
            "retain_weight",
            "retain_anchor_weight",
            "forget_weight",
            "fake_forget_weight",
            "ema_decay",
            "prompt_dropout",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ema_decay >= 1 or self.prompt_dropout >= 1:
            raise ConfigError("ema_decay and prompt_dropout must be below 1")
        if self.override is not None:
            if not self.override.strip():
                self.override = None
            elif self.override.strip().lower() == self.concept.strip().lower():
                raise ConfigError(
                    f"the override {self.override!r} is the concept being forgotten; pick a safe concept to pull it "
                    "to, e.g. --override 'a middle aged man' for a celebrity"
                )
        if self.initial_generator is not None and not self.initial_generator.strip():
            self.initial_generator = None


def _read_lines(path: str, what: str) -> list[str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{what} file {file} does not exist; pass a text file with one prompt per line")
    lines = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{what} file {file} is empty; put one prompt per line")
    return lines


def _replace_concept(prompt: str, concept: str, override: str) -> str:
    """The override prompt: the concept (case-insensitive, whole words) replaced by c_o, as the official regex."""
    return re.sub(rf"\b{re.escape(concept)}\b", override, prompt, flags=re.IGNORECASE)


@register
class SFD(EraseMethod):
    """Score Forgetting Distillation: a one-step generator whose forget prompts follow the teacher's override score."""

    name = "sfd"
    config_class = SFDConfig
    model_type = "stable_diffusion"
    targets = ("generator",)
    summary = "Distils the model into a one-step generator that draws a safe override where the concept was asked for."
    paper = "Score Forgetting Distillation (Chen et al., ICLR 2025)"
    code = "https://github.com/tqch/score-forgetting-distillation"

    def prompts(self, pipe, data: EraseData | None) -> tuple[list[str], list[str], list[str]]:
        """(retain prompts c, forget prompts c_f, override prompts c_o, pairwise with the forget prompts)."""
        cfg: SFDConfig = self.config
        toy = is_toy_model(pipe)
        if toy and cfg.forget_prompts_file is None and (data is None or data.forget_prompts is None):
            from pipelines.toy.world import (
                COLOURS,
                canonical,
                concept_kind,
                prompt_for,
                prompts_without,
                toy_replacement,
            )

            value, kind = canonical(cfg.concept), concept_kind(cfg.concept)
            if kind != "object":
                raise ConfigError(f"SFD on the toy world forgets an object (e.g. 'star'); {cfg.concept!r} is not one")
            override = canonical(cfg.override) if cfg.override else toy_replacement(value, kind)
            if override is None or concept_kind(override) != "object":
                raise ConfigError(f"the override {cfg.override!r} is not a toy-world object; name one, e.g. 'circle'")
            if override == value:
                raise ConfigError(f"the override {cfg.override!r} is the concept {cfg.concept!r} itself; pick another")

            forget = [prompt_for(value, c) for c in COLOURS]
            overrides = [prompt_for(override, c) for c in COLOURS]
            retain = prompts_without(value)
        else:
            if cfg.override is None:
                raise ConfigError(
                    "SFD needs an override concept on a real model: pass override='a middle aged man' (--override), "
                    "the safe concept the forgotten one is replaced by"
                )
            if data is not None and data.forget_prompts is not None:
                forget = list(data.forget_prompts)
            elif cfg.forget_prompts_file:
                forget = _read_lines(cfg.forget_prompts_file, "forget prompts")
            else:
                forget = [t.format(cfg.concept) for t in FORGET_TEMPLATES]
            missing = [p for p in forget if not re.search(rf"\b{re.escape(cfg.concept)}\b", p, flags=re.IGNORECASE)]
            if missing:
                raise ConfigError(
                    f"forget prompt {missing[0]!r} does not name the concept {cfg.concept!r}, so it has no override; "
                    "every forget prompt must contain the concept"
                )
            overrides = [_replace_concept(p, cfg.concept, cfg.override) for p in forget]
            retain = object_retain_prompts(cfg.concept)
        if data is not None and data.retain_prompts is not None:
            retain = list(data.retain_prompts)
        elif cfg.retain_prompts_file:
            retain = _read_lines(cfg.retain_prompts_file, "retain prompts")
        return retain, forget, overrides

    def initial_generator(self, pipe) -> tuple[torch.nn.Module, int]:
        """θ's start and its t_init: the initial one-step generator, or the teacher's UNet."""
        cfg: SFDConfig = self.config
        if cfg.initial_generator is not None:
            one_step = load_one_step(cfg.initial_generator, teacher=pipe)
            mine, theirs = one_step.unet.config, pipe.unet.config
            for key in ("in_channels", "sample_size", "cross_attention_dim"):
                if mine[key] != theirs[key]:
                    raise ConfigError(
                        f"the initial generator {cfg.initial_generator!r} does not fit this teacher ({key} "
                        f"{mine[key]} vs {theirs[key]}); pass a one-step generator distilled from this model"
                    )
            return copy.deepcopy(one_step.unet), one_step.init_timestep
        return copy.deepcopy(pipe.unet), cfg.init_timestep

    def check(self, pipe, *, data: EraseData | None = None) -> None:
        cfg: SFDConfig = self.config
        if is_one_step(pipe):
            raise ConfigError(
                "SFD needs the multi-step teacher (a StableDiffusionPipeline), not a one-step generator; pass the "
                "teacher as the model and the generator as initial_generator"
            )
        self.prompts(pipe, data)
        if cfg.initial_generator is None and not cfg.init_from_teacher:
            raise ConfigError(
                "SFD starts from a one-step generator (the official SD recipe: SiD-LSG); pass initial_generator=PATH "
                "(--initial_generator, a OneStepPipeline folder), or init_from_teacher=True to distil from the "
                "teacher's UNet"
            )

    def erase(self, pipe, *, data: EraseData | None = None, callback: StepCallback | None = None) -> EraseResult:
        cfg: SFDConfig = self.config
        self.check(pipe, data=data)
        device = execution_device(pipe)
        meter = RunMeter(device)
        base = base_identity(pipe)
        half = frozen_dtype(cfg, device)
        retain_prompts, forget_prompts, override_prompts = self.prompts(pipe, data)

        teacher = frozen_copy(pipe.unet, half) if half else pipe.unet
        generator_unet, init_timestep = self.initial_generator(pipe)
        generator_unet = generator_unet.to(device).float().train().requires_grad_(True)
        fake = copy.deepcopy(pipe.unet).to(device).float().train()
        ema = copy.deepcopy(generator_unet).requires_grad_(False) if cfg.ema_decay > 0 else None
        # θ0 for the retain anchor: the generator as it starts, frozen (one more UNet, no optimiser state).
        anchor = frozen_copy(generator_unet, half) if cfg.retain_anchor_weight > 0 else None
        if cfg.gradient_checkpointing:
            generator_unet.enable_gradient_checkpointing()
            fake.enable_gradient_checkpointing()
        betas = (cfg.adam_beta1, cfg.adam_beta2)
        use_8bit = cfg.use_8bit_adam
        gen_opt = adam(list(generator_unet.parameters()), lr=cfg.learning_rate, betas=betas, use_8bit=use_8bit)
        fake_opt = adam(list(fake.parameters()), lr=cfg.fake_learning_rate, betas=betas, use_8bit=use_8bit)

        with torch.no_grad():
            encode = lambda prompts: encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts).float()  # noqa: E731
            retain_emb = encode(retain_prompts)
            forget_emb = encode(forget_prompts)
            override_emb = encode(override_prompts)
            null_emb = encode([cfg.negative_prompt or ""])
        frozen_cast = half or torch.float32
        alphas_cumprod = pipe.scheduler.alphas_cumprod.to(device)
        size, channels = generator_unet.config.sample_size, generator_unet.config.in_channels
        n = cfg.batch_size
        uncond = null_emb.expand(n, -1, -1)

        gen = torch.Generator().manual_seed(cfg.seed)

        def noised(x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            t = torch.randint(cfg.t_min, cfg.t_max, (n,), generator=gen).to(device)
            eps = torch.randn(x0.shape, generator=gen).to(device)
            return pipe.scheduler.add_noise(x0, eps, t), t, eps  # x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε

        def real_x0(x_t, t, cond):
            return guided_x0(
                teacher,
                x_t.to(frozen_cast),
                t,
                cond.to(frozen_cast),
                uncond.to(frozen_cast),
                cfg.guidance_scale_real,
                alphas_cumprod,
            ).float()

        history: list[dict[str, float]] = []
        # The generator loss differentiates through the frozen teacher (its input x_t), so its activations are kept
        # for backward too; with gradient_checkpointing they are recomputed block by block like the trained UNets'.
        with _gradient_checkpointing(teacher, cfg.gradient_checkpointing):
            for step in range(1, cfg.max_train_steps + 1):
                retain_idx = torch.randint(len(retain_prompts), (n,), generator=gen)
                forget_idx = torch.randint(len(forget_prompts), (n,), generator=gen)
                cond, cond_f, cond_o = retain_emb[retain_idx], forget_emb[forget_idx], override_emb[forget_idx]
                z = torch.randn(n, channels, size, size, generator=gen).to(device)

                # (1) Fake-score step: ε-MSE on the generator's retain and forget samples (prompts dropped for CFG).
                fake.requires_grad_(True)
                with torch.no_grad():
                    x_g = one_step_x0(generator_unet, z, cond, init_timestep, alphas_cumprod)
                    x_f = one_step_x0(generator_unet, z, cond_f, init_timestep, alphas_cumprod)
                fake_losses = []
                # Each term is backpropagated on its own (the gradients add up in .grad, the same sum as one
                # backward of the total) so that only one branch's activations are alive at a time.
                for x0, c, weight in ((x_g, cond, 1.0), (x_f, cond_f, cfg.fake_forget_weight)):
                    x_t, t, eps = noised(x0)
                    drop = (torch.rand(n, generator=gen) < cfg.prompt_dropout).view(-1, 1, 1).to(device)
                    c = torch.where(drop, uncond, c)
                    pred = guided_noise(fake, x_t, t, c, uncond, cfg.guidance_scale_fake_train)
                    fake_losses.append(F.mse_loss(pred, eps))
                    (weight * fake_losses[-1]).backward()
                fake_loss = fake_losses[0].detach() + cfg.fake_forget_weight * fake_losses[1].detach()
                torch.nn.utils.clip_grad_value_(fake.parameters(), cfg.max_grad_value)
                fake_opt.step()
                fake_opt.zero_grad(set_to_none=True)  # freed now: only one network's gradients are ever held

                # (2) Generator step: SiD on retain prompts, and the forget branch with c_p = c_o, c_ψ = c_f.
                fake.requires_grad_(False)
                x_g = one_step_x0(generator_unet, z, cond, init_timestep, alphas_cumprod)
                x_t, t, _ = noised(x_g)
                fake_x0 = guided_x0(fake, x_t, t, cond, uncond, cfg.guidance_scale_fake, alphas_cumprod)
                retain_loss = sid_generator_loss(x_g, real_x0(x_t, t, cond), fake_x0, cfg.alpha).mean()
                anchor_loss = torch.zeros((), device=device)
                if anchor is not None:
                    with torch.no_grad():
                        x_anchor = one_step_x0(
                            anchor, z.to(frozen_cast), cond.to(frozen_cast), init_timestep, alphas_cumprod
                        ).float()
                    anchor_loss = (x_g - x_anchor).square().flatten(1).sum(1).mean()  # ‖·‖² per sample, as SiD
                # per branch, as the fake-score step
                (cfg.retain_weight * retain_loss + cfg.retain_anchor_weight * anchor_loss).backward()
                forget_loss = torch.zeros((), device=device)
                if cfg.forget_weight > 0:
                    x_f = one_step_x0(generator_unet, z, cond_f, init_timestep, alphas_cumprod)
                    x_t, t, _ = noised(x_f)
                    fake_x0 = guided_x0(fake, x_t, t, cond_f, uncond, cfg.guidance_scale_fake, alphas_cumprod)
                    forget_loss = sid_generator_loss(x_f, real_x0(x_t, t, cond_o), fake_x0, cfg.alpha).mean()
                    (cfg.forget_weight * forget_loss).backward()
                loss = (
                    cfg.retain_weight * retain_loss.detach()
                    + cfg.retain_anchor_weight * anchor_loss.detach()
                    + cfg.forget_weight * forget_loss.detach()
                )
                if not torch.isfinite(loss):  # before the step: the generator is left as it was
                    raise FloatingPointError(
                        f"SFD's generator loss is not finite at step {step}; lower learning_rate or the CFG scales"
                    )
                torch.nn.utils.clip_grad_value_(generator_unet.parameters(), cfg.max_grad_value)
                gen_opt.step()
                gen_opt.zero_grad(set_to_none=True)
                if ema is not None:
                    ema_update(ema, generator_unet, cfg.ema_decay)

                logs = {
                    "loss": loss.item(),
                    "loss_retain": retain_loss.item(),
                    "loss_forget": forget_loss.item(),
                    "loss_anchor": anchor_loss.item(),
                    "loss_fake": fake_loss.item(),
                }
                history.append(logs)
                notify(callback, step, cfg.max_train_steps, logs)

        result_unet = ema if ema is not None else generator_unet
        result_unet.eval().requires_grad_(False)
        if cfg.gradient_checkpointing:
            result_unet.disable_gradient_checkpointing()
        cfg.init_timestep = init_timestep  # the t_init the generator samples at, whatever it started from
        metrics = meter.metrics(sum(p.numel() for p in generator_unet.parameters()))
        metrics["final_loss"] = history[-1]["loss"] if history else None
        return EraseResult(
            method=self.name,
            config=cfg,
            components={"generator": result_unet},
            artifact_kind="generator",
            sampler="one_step",
            trained_keys={"generator": sorted(result_unet.state_dict())},
            base=base,
            loss_history=history,
            metrics=metrics,
        )


@contextlib.contextmanager
def _gradient_checkpointing(unet: torch.nn.Module, enabled: bool):
    """Block-level gradient checkpointing on ``unet`` for the duration, switched back afterwards (the teacher is the
    caller's UNet, not a copy)."""
    switch = enabled and not unet.is_gradient_checkpointing
    if switch:
        unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if switch:
            unet.disable_gradient_checkpointing()
