"""Adapt-then-Unlearn: unlearning a feature from a pretrained GAN without its training data.

Paper: Tripathy, Guha, Ghosh, Babu et al., "Adapt then Unlearn: Exploring Parameter Space Semantics for Unlearning in
Generative Adversarial Networks", TMLR 2025, https://arxiv.org/abs/2309.14054 . Official code:
https://github.com/atriguha/Adapt_Unlearn (``Negative_Adaptation/EWC_ADAPT_*/stylegan2_ewc*.py``, ``model.py``;
``Unlearning/Unlearning_MNIST/train_different_losses.py``, ``Unlearning/Unlearning_{CelebA,AFHQ}/unlearn_main.py``).

The method, as the official code runs it:

0. **Feedback.** The pretrained generator samples batches (style mixing with probability 0.9); a judge (the paper's
   classifier) sorts them into *negatives* (the unwanted feature is there) and *positives* (it is not).
1. **Negative adaptation.** A copy of the generator is fine-tuned adversarially on the negatives (they are D's "real"
   data), with an EWC penalty that keeps it near the original θ_G:
   L_G = L_ns-adv + λ/2 · Σ_i F_i (θ_i − θ_G,i)², λ = 5e8, F the diagonal Fisher information of the synthesis
   convolutions (``generator.convs``), estimated from 32 samples as the mean of the squared gradients of the
   discriminator's logit D(G(z)) (the official ``estimate_fisher``). Its EMA generator θ_N draws mostly negatives.
   Several adapted models (``num_adapted_models``) can be trained, one after the other.
2. **Unlearning.** The *original* generator is fine-tuned adversarially on the positives, plus a repulsion term that
   pushes θ away from the adapted model(s) in parameter space. With K adapted models and P parameter tensors the
   official distance is d(θ) = (K/2)·(1/P)·Σ_p Σ_k mean((θ_p − θ_{N_k,p})²), and the G loss is L_ns-adv + R(d):

   - ``il2`` (paper: IL2, 1/‖θ−θ_N‖²): R = γ / d
   - ``nl2`` (paper: NL2, −‖θ−θ_N‖²): R = −γ · d
   - ``el2`` (paper: EL2, exp(−α‖θ−θ_N‖²)): R = 100 · exp(−γ · d)   (the official code's factor 100: ``el2_scale``)

   Because d is a mean of per-tensor mean squared differences (not ‖θ−θ_N‖²), γ values are only comparable with the
   official runs when ``distance_scaling="official"`` (the default). The official code multiplies by K/2 where the
   comment intends a mean (÷2K); ``distance_scaling="mean"`` uses 1/(2K) instead. Both agree for one adapted model.

Both stages are rosinality's StyleGAN2 training step: non-saturating G loss, logistic D loss, lazy R1 (γ = 10 every
16 steps), lazy path-length regularisation (weight 2 every 4 steps), Adam with lr·c and β = (0, 0.99^c) where c is
the lazy-regularisation ratio, and an EMA generator (0.5^(32/10k) per step). The result is the unlearning stage's
EMA generator; the artifact is ``gan_generator.safetensors``.

Defaults are the paper's MNIST setting (batch 16, lr 0.002, 200 negatives, λ = 5e8, EL2 with γ = 1 from the MNIST
``run_file.sh``); ``max_train_steps`` counts the generator steps of *both* stages (MNIST README: 2000 adaptation +
3000 unlearning = 5000, so ``adapt_fraction`` = 0.4), so that progress and the loss history cover the whole run.
``presets["toy"]`` fits the toy world's 32x32 GAN on a CPU.

Defects of the official code, fixed here (reference/methods.md §5.5):

- ``Unlearning_CelebA/unlearn_main.py`` calls ``calc_difference_param_new(generator, ckpt_gens_repel)`` with the
  arguments swapped (the function then reads ``args.list_of_models`` off the generator) and ``ckpt_gens_repel`` is a
  hard-coded list of absolute wandb paths. Here the adapted models are passed in memory, in the documented order.
- ``calc_difference_param_new`` rebuilds a hard-coded ``Generator(32, 128, 8)`` and ``torch.load``s every adapted
  checkpoint from disk at *every* generator step; here the adapted parameters are held once, in the base model's
  architecture, on the training device.
- Classifiers are re-instantiated and reloaded from disk on every classification call; here the judge is loaded once
  per run (``pipelines.toy.judge.installed_toy_judge`` caches it) or passed in with the bundle or the data.
- Absolute paths throughout and a mandatory ``wandb.init``: there are no paths here and no tracker is imported.
- The CelebA/AFHQ adaptation scripts declare a positional ``gan_ckpt`` with ``required=True`` (an argparse TypeError)
  and the README's flags (``--expt``, ``--repel_loss``) do not match the scripts; here one typed, validated config
  covers both stages.
- The EWC penalty is moved to the CPU at every step; here it stays on the training device.
- Style mixing draws from Python's unseeded ``random``; here every draw follows ``config.seed``.

Deliberate deviations:

- The bundle carries rosinality's ``g_ema`` only, so both stages start from it (the official unlearning stage starts
  from the checkpoint's non-EMA ``g``) with fresh Adam states (the official code restores the pretrained optimiser
  states, which a bundle does not hold).
- ``--scale_repel_loss`` (a γ derived from the digit count of d) and ADA augmentation are not implemented.
- PUL (``gan.metrics``) is measured at the end on ``eval_samples`` shared latents and reported in the metrics, in
  place of the official hard-coded evaluation every 500 iterations.

An addition (not in the paper, off by default): the **retain anchor** ``retain_anchor_weight`` λ_a. The repulsion acts
on the parameters, so it moves every sample, not only the concept's: on the toy GAN the preset without it erases
circles by scrambling half of the other samples into other objects (``kept`` in ``benchmarks/results/atu.json``). The
anchor adds λ_a · mean ‖G_θ(z) − G_θG(z)‖² to the unlearning stage's G loss on the latents z of the positives the
feedback step collected (their outputs G_θG(z) are stored already; the cost is one more generator forward and
backward per step): what the pretrained generator drew there without the concept, it should still draw, while the
repulsion moves the rest. It is the generator-side twin of SFD's retain anchor (``erasure/sfd.py``) and needs
``mixing=0`` (a mixed sample has no single z to anchor). ``retain_anchor_space`` picks where the two samples are
compared: the generator's raw outputs (``outputs``: pixels, or a latent GAN's VAE latents), or a perceptual space
(``pipelines.perceptual``: the toy judge's penultimate features, ``judge``, or LPIPS). In the raw outputs thin
shapes are lost through small changes (a star's points), which a perceptual space counts; the toy preset compares in
the toy judge's features (``toy-heldout``, which the method never sees, measures it).

A second addition (not in the paper, off by default): the **output repulsion** ``output_repulsion_weight`` γ_f. The
paper's repulsion pushes θ from θ_N in parameter space, and its gradient is θ − θ_N: it moves the weights that the
adaptation changed. When the adaptation made θ_N draw the concept from every latent, those weights are the *other*
samples' pathways, and the concept's own (the latents from which θ_G already drew it, where θ_N did not need to
change) moves only through weights it shares with them: on the toy GAN a third of the circles survive any strength of
the parameter repulsion that spares the rest (the preset's comment). The output repulsion adds, on ``batch_size``
fresh latents per unlearning step,

    γ_f · mean_k mean_z exp(−D(G_θ(z), G_θN_k(z)) / τ),

with D the per-sample distance in ``output_repulsion_space`` (as ``retain_anchor_space``; θ_N's samples carry no
gradient). Where θ_N still draws what θ draws (the concept's own latents) D starts near 0 and the term pushes G_θ(z)
away; where θ_N turned another object into the concept, D is already large, exp(−D/τ) ≈ 0 and the term leaves that
sample to the anchor. τ sets how far a sample must move to be let go. It costs one more generator forward and backward
and two forward passes of the distance's network per step. The toy preset uses it in the toy judge's features (γ_f =
20, τ = 0.2).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from erasure.base import EraseConfig, EraseData, EraseMethod, EraseResult, RunMeter, StepCallback, notify, register
from pipelines.artifacts import base_identity
from pipelines.errors import ConfigError
from pipelines.gan import GANBundle, to_unit_range
from pipelines.perceptual import perceptual_distance
from pipelines.stylegan2 import Discriminator, Generator
from pipelines.training import ema_update

from .metrics import percentage_of_unlearning

# rosinality's EMA: half-life of 10k images at its batch of 32 (``accumulate(g_ema, g, 0.5 ** (32 / (10 * 1000)))``).
OFFICIAL_EMA_DECAY = 0.5 ** (32 / 10_000)


@dataclass
class ATUConfig(EraseConfig):
    """Config of :class:`AdaptThenUnlearn`. Defaults are the paper's MNIST setting; ``presets["toy"]`` fits the toy.

    Args:
        max_train_steps (`int`, defaults to 5000): generator steps of both stages together.
        learning_rate (`float`, defaults to 0.002): Adam learning rate before the lazy-regularisation ratio.
        adapt_fraction (`float`, defaults to 0.4): share of the steps spent on negative adaptation (all models).
        num_adapted_models (`int`, defaults to 1): K, adapted models to repel from (different random draws).
        batch_size (`int`, defaults to 16): images per step.
        judge (`str`, *optional*): judge that sorts samples (an ``eval.load_judge`` name); default: the bundle's,
            else ``"toy"``.
        num_negatives / num_positives (`int`): samples collected for each stage (paper: 200 / 5000 on MNIST).
        max_candidates (`int`): give up collecting after this many samples.
        mixing (`float`, defaults to 0.9): style-mixing probability while sampling and training.
        ewc_lambda (`float`, defaults to 5e8): λ of the EWC penalty.
        fisher_samples (`int`, defaults to 32): samples of the Fisher estimate.
        repulsion (`str`, defaults to `"el2"`): ``il2``, ``nl2`` or ``el2`` (module docstring).
        gamma (`float`, defaults to 1.0): γ of the repulsion.
        el2_scale (`float`, defaults to 100.0): factor of EL2, ``el2_scale · exp(−γ d)``.
        distance_scaling (`str`, defaults to `"official"`): ``official`` (×K/2) or ``mean`` (×1/(2K)).
        r1 (`float`, defaults to 10.0): R1 weight γ_R1; ``d_reg_every`` (16) its interval.
        path_regularize (`float`, defaults to 2.0): path-length weight (0 disables); ``g_reg_every`` (4) its interval.
        ema_decay (`float`): EMA decay per step of the generator returned (0 returns the raw generator).
        eval_samples (`int`, defaults to 1000): shared latents for the PUL reported in the metrics (0 skips it).
        retain_anchor_weight (`float`, defaults to 0.0): λ_a of the retain anchor (not in the paper; the module
            docstring): λ_a · mean D(G_θ(z), G_θG(z)) on the latents z of the collected positives. Needs
            ``mixing=0``.
        retain_anchor_space (`str`, defaults to `"outputs"`): where the anchor's D compares: ``outputs`` (the
            squared distance of the generator's raw outputs: pixels, or a latent GAN's VAE latents), ``judge``
            (the toy judge's penultimate features of the images) or ``lpips:alex|vgg|squeeze``
            (``pipelines.perceptual``).
    """

    method = "adapt_then_unlearn"
    # Tuned on the toy latent StyleGAN2 (issue 19; erasing "circle", seed 0, 1000 shared latents of seed 1 judged by
    # toy-heldout: PUL / the largest shift of another object's share). Style mixing had to go: the toy GAN was trained
    # without it, its mixed samples are off-distribution blobs the judge calls circles, and with mixing 0.9 the circle
    # share *rose* (13.8 -> 19.9 %). Without mixing, 600 steps: positives alone (NL2, γ = 1e-6) 7 % / 3.3 points; EL2 γ
    # = 3, 30, 300, 1000, 10000: 7 / 9.6, 11 / 8.5, 31 / 8.5, 38 / 7.7, 7 / 3.0; EL2 γ = 30 for 1200 steps 22 / 9.0, γ
    # = 300 with 900 unlearning steps 25 / 4.4; lr 0.006 -3 / 7.4; IL2 γ = 3, 10, 30: 75 / 10.3, 80 / 17, 83 / 22. On
    # this GAN every object has its own input coordinates, and the negatively adapted copy changes what the *other*
    # objects' coordinates draw (99 % of its samples are circles), so repelling from it barely touches the circles'
    # own; only the strongest repulsion (IL2) removes most of them, at the price of moving others. IL2 γ = 3 is the
    # compromise; it does not reach the bar (PUL >= 90 % with others within 10 points). Three adapted models (K
    # = 3, 300 adaptation steps each, the distance averaged over them, 300 unlearning steps, IL2 γ = 3): 55 / 12.4
    # (circles into crosses), worse than one. A longer unlearning stage (300 adaptation + 600 unlearning steps): IL2 γ
    # = 3 57 / 9.8 (hearts; solid style -15), γ = 1 54 / 9.6 (triangles; -13). R1 and the EMA are scaled down with the
    # run (a 600-step run cannot wait for rosinality's 10k-image EMA half-life). Two more levers, same protocol
    # (circle / diamond; the preset: 75 % with +10.3 / 96 % with +22.0), neither kept: EWC over every generator weight
    # in the adaptation (the official code holds generator.convs only, so the mapping network adapts freely): λ 5e8
    # or 5e7 leave the adapted copy where it was and nothing is erased (-2 / -3 %, -1 / -5 %), 5e6 gives 1 / 72 %
    # (colour +17), 5e5 a copy so close to the base that IL2's γ/d collapses every sample (100 %, objects +31 / +42);
    # repelling only some weights keeps the style but loses the drop: the mapping network 25 / 92 % (-12.3 / +17.8),
    # the synthesis network 28 / 72 % (+9.4 / +12.6), and with γ = 10 30 / 76 % (+8.8 / +18.6). (Those runs predate
    # the toy judges' loader fix; on that fix's code the preset gave 65 % with +7.9 / 95 % with +18.8. On 2026-12-07,
    # on another machine of the pool, the same code gave 75 % with +10.3 / 96 % with +22.0 again: the runs move with
    # the machine's floating point, so the loader fix was not the cause.) Step by step on that machine (the EMA
    # generator judged every 60 of the 300 unlearning steps, seed 0): circle 55 / 87 / 79 / 79 / 65 % (+12.3 / +6.6 /
    # +8.6 / +5.5 / +7.9; the style -35 to -17),
    # diamond 90 / 95 / 96 / 98 / 95 % (-12.7 / +15.4 / +15.3 / +20.9 / +18.8): no stopping step serves both. The
    # paper's 5000 positives: circle 70 / 94 / 94 / 67 / 33 % (+10.3 / +11.6 / +10.5 / +11.7 / +14.9), diamond 94 /
    # 100 / 97 / 92 / 94 % (+10.1 / +20.9 / +18.2 / +27.8 / +25.5); batch 32: circle 48 / 85 / 84 / 76 / 85 % (+5.8 /
    # +7.6 / +6.2 / +11.7 / +22.5), diamond 94 / 97 / 97 / 98 / 93 % (-11.8 / +20.7 / +17.8 / +20.0 / +18.7). Neither.
    # Why the adversarial term cannot place the removed samples: the toy GAN learned its objects by distillation,
    # not from its discriminator, and that discriminator does not see objects. Its mean logit over 1000 base
    # samples per object (toy-heldout's reading) is -0.86 to -0.15 (circles -0.78); after the unlearning stage,
    # whose reals hold no circles, it rates circles 1.65 among 1.15-2.15 for the others. Screens (seed 0, the EMA
    # generator judged every 60 of 300 unlearning steps; circle / diamond): that D at 5x the learning rate 63 / 81
    # / 86 / 90 / 89 % (+17.6 / +13.7 / +14.5 / +12.4 / +17.1), 95 / 98 / 99 / 100 / 95 % (-10.9 / +18.1 / +17.2 /
    # +19.7 / +16.8). An object-aware D (the latent D plus the toy build's projected heads on the frozen toy
    # judge's trunk, reading the decoded latents): IL2 γ = 3 56 / 89 / 93 / 59 / 80 % (+9.4 / +7.9 / +5.7 / +12.4 /
    # +18.5), 90 / 98 / 97 / 95 / 93 % (+9.9 / +18.9 / +22.9 / +22.7 / +20.4); γ = 1 54 / 83 / 83 / 77 / 73 % (+6.7
    # / +5.4 / +7.8 / +10.7 / -9.1), 90 / 94 / 96 / 92 / 82 % (+12.8 / +19.7 / +15.3 / +15.8 / +14.7); γ = 0.3 49 /
    # 70 / 64 / 65 / 50 % (all within 9.1), 87 / 91 / 89 / 77 / 87 % (+12.6 / +11.9 / -9.6 / -9.0 / +9.4); no
    # repulsion 9 / 4 / 12 / 14 / 24 % (circle, within 2.7), and over 1200 unlearning steps (judged every 200) 22 /
    # 25 / 37 / 24 / 46 / 25 % (within 5.8); γ = 3 with an EMA decay of 0.99 (both stages) 4 / 34 / 67 / 84 / 84 %
    # (+2.8 / +8.3 / +12.6 / +8.9 / +7.5), 20 / 75 / 94 / 95 / 95 % (+1.7 / +6.7 / +15.2 / +20.6 / +22.9). The
    # repulsion does the erasing and decides where the samples go; a D that sees objects does not redirect them, and
    # alone it moves nothing else but does not erase. A GAN that can spread them (2026-12-07): the toy GAN reads its
    # object as a one-hot, so every circle latent enters the mapping network as the same code and an erased code
    # lands on one place; with a soft code, 4·softmax(z[0:8] / 0.3), the runner-up object is in the input. That GAN
    # (the shipped one fine-tuned 1000 steps by its own paired distillation, 7.6 min; not shipped: toy-heldout is
    # confident on 68 % of its samples, the bar asks 85) under the preset's training, end of run, seed 0: IL2 γ = 3
    # circle 82 % (crosses +15.0, hearts +13.5), diamond 95 % (circles +16.8, squares +15.7, triangles -11.4); γ = 1
    # 71 % (all within 6.9: the circles spread over five objects), 90 % (circles +16.7); γ = 0.3 69 % (+7.3), 79 %
    # (+8.9). The soft code spreads a circle erasure, but the same trade-off stays: PUL >= 90 % comes with another
    # share moved by 15-17 points, chiefly circles, the judge's reading of a degraded blob. Not shipped: no setting
    # met the bar. On the shipped GAN with `kept` (the share of the other samples that keep their object; 2026-12-07,
    # benchmark latents, seed 0): the preset keeps 46 / 36 %; IL2 γ = 0.3 gives circle 61 % (+9.4, kept 68 %) and
    # diamond 92 % (-9.2, kept 70 %, stars 18 %): the share bar met for diamond only, a third of the rest scrambled.
    # The retain anchor λ_a (module docstring; same protocol, PUL / largest other-object shift / kept): λ_a = 10 at
    # γ = 3 circle 64.5 % (-5.3, kept 83 %), diamond 94.7 % (-8.6, kept 78 %): the bar met for diamond, and both keep
    # far more of the rest than without it (46 / 36 %). Stronger repulsion with it, circle: (λ_a, γ) = (10, 10) 79 %
    # (+8.7, kept 68 %), (30, 10) 70 % (+6.5, 81 %), (100, 30) 69 % (+6.9, 79 %), (30, 30) 86 % (+8.3, 61 %), (30, 50)
    # 84 % (+8.8, 51 %), (100, 100) 86 % (+8.7, 56 %), (30, 100) 92 % (+22.0, 36 %); but diamond at (10, 10) 99 %
    # (+14.3) and at (30, 30) 100 % (+17.4). (30, 30) over 900 steps (300 adaptation + 600 unlearning) 54 % (stars
    # -10.9); NL2 with the anchor: γ = 1e3 10 % (kept 99 %), γ = 1e5 96 % (crosses +39). Stars are the object every
    # run loses first (kept 5-42 % where circles go). λ_a = 10 at γ = 3 was the preset: the only setting in the
    # outputs that meets the bar on one object and keeps four fifths of the rest on both; but its diamond run moves
    # the style by 14 points (solid shapes outlined or striped), and the claim reads every head. The anchor in the
    # toy judge's features (retain_anchor_space="judge"; same protocol, the style's shift after the slash): λ_a =
    # 20, γ = 3 circle 64.5 % (+4.1, kept 91 %: stars 89 % against 49), diamond 100 % (+6.5 / style -5.0, kept 82
    # %; the outputs anchor: style -12.7). These screens clamped the images to [0, 1]; the shipped comparison does
    # not (a clamp has no gradient where a sample overshoots) and gives circle 65 % (+5.0, kept 90 %) and diamond
    # 100 % (+7.2, every head within 7.2, kept 82 %; benchmarks/results/atu.json). Circle with more
    # repulsion: (60, 10) 61 % (+4.0, kept 90 %), (60, 30) 77 % (+4.8, 77 %), (200, 30) 59 % (+3.9, 88 %): the
    # features hold the rest better than the outputs did at the same PUL, but do not remove more circles. Kept:
    # λ_a = 20 in the judge's features at γ = 3. Screened after that (2026-12-07; circle, seed 0, the EMA generator
    # judged by toy-heldout every 60 unlearning steps unless stated; PUL / largest other-object shift / kept): with
    # the judge-space anchor the circles plateau at 55-67 % whatever the adversarial side does: D at 5x the learning
    # rate 51 / 63 / 59 / 62 / 60 % (kept 85-91 %; diamond 89-98 %, within 9.6), an EMA of 0.99 over twice the
    # unlearning steps 20 / 59 / 67 / 65 / 67 / 60 % (every 100), projected heads on the frozen toy judge's trunk
    # beside the latent D 38 / 58 / 61 / 57 / 54 %. After the EMA-0.99 run, of the 131 latents whose object block
    # names a circle, 48 still read as circles, at a confidence of 0.69 (0.96 before), and the rest spread over
    # squares (40), crosses (15) and five more objects: the repulsion's gradient is θ − θ_N, θ_N changed the *other*
    # objects' pathways, so the circles' own moves only through shared weights and half-dissolves. More push moves
    # them further and the rest with them: IL2 γ = 10 49 / 80 / 83 / 78 / 77 % (kept 72-80 %, stars 46-60 % from
    # step 120); NL2 (a push that grows with the distance) γ = 1e4 9 / 56 / 77 / 82 / 83 % (+12.0 at the end), γ =
    # 3e4 42 / 90 / 94 / 88 / 85 % (+6.1 / +9.9 at 120 / 180 steps, stars kept 41 % at 180), with λ_a = 60 12 / 61 /
    # 80 / 82 / 80 %.
    # NL2 γ = 3e4 judged every 30 steps: circle at seeds 0 / 1 / 2 after 180 steps 93.5 / 94.9 / 85.5 % (+9.9 / +7.3 /
    # +9.5), diamond (seed 0) 99.2 % with +8.4 at 150 and 95.4 % with +10.7 at 180, stars kept 26-41 % at 180; with
    # 64 anchor samples per step (16 above) circle 89.1 / 89.9 / 90.6 % at 120 / 150 / 180 (+5.6 / +8.6 / +9.2),
    # diamond 99.2 / 97.7 / 96.9 % (+5.4 / +7.6 / +11.9; style -9.1 to -9.8), stars kept 33-66 %. NL2 is the first
    # push to pass 90 % on circles within 10 points, at two seeds of three, on a knife edge: the step that erases the
    # last circles is the step that loses the stars. Not kept. A repulsion that reaches the concept's own pathway (a
    # screen, not in the paper, not implemented here): beside IL2 γ = 3 and the anchor, γ_f · mean_z exp(−d(z) / τ),
    # d(z) the toy judge's feature distance between G_θ(z) and the *adapted* copy's G_θN(z) on 16 fresh z a step.
    # Where θ_N drew the concept too (the circles' own code) d starts at 0 and the term pushes; where θ_N turned
    # another object into a circle, d is already large and it does not. γ_f = 20, τ = 0.1: circle 84 / 95 / 91 / 85 /
    # 83 % (within 8.0, kept 85-92 %, stars 86-100 %), diamond 93 / 97 / 99 / 100 / 100 % (+5.8 and the style -6.4 at
    # the end, kept 83 %); τ = 0.3: circle 93 / 99 / 99 / 99 / 99 % (+5.2, the style -9.4, every head within 9.4,
    # kept 92 %, stars 99 % at the end), diamond 98.5 / 100 / 100 / 100 / 99 % (squares +7.4 but the style -13.3 at
    # the end, stars kept 49 %); τ = 0.2: circle 89 / 98 / 98 / 95 / 94 % (at the end +4.4, every head within 6.0,
    # kept 92 %, stars 98 %), diamond 98.5 / 100 / 100 / 100 / 100 % (at the end +7.2, every head within 9.4, kept
    # 82 %, stars 51 %). τ = 0.2 meets the bar on every head for both objects at seed 0: the preset (the output
    # repulsion, ``output_repulsion_weight``; the module docstring). Shipped (2026-12-08, benchmarks/results/atu.json,
    # seed 0): circle 94.2 % (crosses +4.1, every head within 5.9, kept 92 %), diamond 100 % (squares +7.4, the style
    # -9.7, kept 82 %, stars 50 %); at the leaderboard's seeds 0-2 (its GAN block, other latents): circle 93.5 / 97.1 /
    # 90.6 % (every head within 9.0), diamond 100 / 100 / 96.6 % (objects within 7.6, the style -8.8 / -10.2 / -11.3).
    # With NL2 or EL2 at γ = 3 in place of IL2 the output repulsion erases on its own and keeps 97-98 % of the rest:
    # diamond 93 / 95 % (every head within 8.0), but every circle lands on squares (+13.0). Screens after shipping
    # (2026-12-08), on the leaderboard's two hardest runs, judged as its scorecard judges (toy-heldout, 1000 latents of
    # seed 0): diamond at erasure seed 1 (the preset: the style -10.2) / circle at seed 2 (the preset: 90.6 %). λ_a =
    # 40: diamond 99.1 % within 7.8 (kept 89 %), circle 86.2 %; τ = 0.15: diamond within 9.2, circle 84.1 %; λ_a = 30:
    # diamond 100 % within 8.8 (squares +5.3, kept 87 %), circle 90.6 % within 6.9 (kept 93 %); diamond at seed 2
    # (the preset: the style -11.3) with λ_a = 30: 97.4 %, squares +4.0, kept 89 %, but the style -10.3, still 0.3
    # over. The anchor trades the last circles against the diamonds' style; λ_a between 30 and 40 with τ = 0.2 is where
    # to look next (each preset needs the benchmark and the GAN block re-run, 80 minutes, to ship).
    presets = {
        "toy": {
            "max_train_steps": 600,
            "adapt_fraction": 0.5,
            "learning_rate": 0.002,
            "batch_size": 16,
            "num_negatives": 200,
            "num_positives": 1000,
            "max_candidates": 20_000,
            "mixing": 0.0,
            "ewc_lambda": 5e8,
            "fisher_samples": 32,
            "repulsion": "il2",
            "gamma": 3.0,
            "r1": 0.1,
            "path_regularize": 0.0,
            "ema_decay": 0.95,
            "eval_samples": 512,
            "retain_anchor_weight": 20.0,
            "retain_anchor_space": "judge",
            "output_repulsion_weight": 20.0,
            "output_repulsion_tau": 0.2,
            "output_repulsion_space": "judge",
        }
    }

    max_train_steps: int = field(
        default=5000,
        metadata={"help": "Generator steps of both stages together (MNIST: 2000 adaptation + 3000 unlearning)."},
    )
    learning_rate: float = field(default=0.002, metadata={"help": "Adam learning rate (paper: 0.002)."})
    adapt_fraction: float = field(
        default=0.4, metadata={"help": "Share of the steps spent on negative adaptation (MNIST: 2000/5000 = 0.4)."}
    )
    num_adapted_models: int = field(
        default=1, metadata={"help": "K: adapted models θ_N to repel from, each from its own random draws."}
    )
    batch_size: int = field(default=16, metadata={"help": "Images per step (paper: 16)."})
    judge: str | None = field(
        default=None,
        metadata={
            "help": "Judge that sorts samples into negatives/positives (eval.load_judge name); default: the judge "
            "the bundle carries, else 'toy'."
        },
    )
    num_negatives: int = field(
        default=200,
        metadata={"help": "Negatives (samples showing the concept) for adaptation (MNIST 200, faces 300)."},
    )
    num_positives: int = field(
        default=5000, metadata={"help": "Positives (samples without the concept) for unlearning (paper: 5000)."}
    )
    max_candidates: int = field(
        default=200_000, metadata={"help": "Stop sampling after this many candidates (then use what was found)."}
    )
    mixing: float = field(default=0.9, metadata={"help": "Style-mixing probability (paper: 0.9)."})
    ewc_lambda: float = field(default=5e8, metadata={"help": "λ of the EWC penalty λ/2·Σ F(θ−θ_G)² (paper: 5e8)."})
    fisher_samples: int = field(default=32, metadata={"help": "Samples of the diagonal Fisher estimate (paper: 32)."})
    repulsion: Literal["il2", "nl2", "el2"] = field(
        default="el2", metadata={"help": "Repulsion: il2 (γ/d), nl2 (−γ·d) or el2 (100·exp(−γ·d))."}
    )
    gamma: float = field(default=1.0, metadata={"help": "γ of the repulsion (MNIST run file: 1.0 with el2)."})
    el2_scale: float = field(default=100.0, metadata={"help": "Factor of el2, el2_scale·exp(−γ·d) (official: 100)."})
    distance_scaling: Literal["official", "mean"] = field(
        default="official",
        metadata={"help": "Parameter distance over K models: official (×K/2, as the code) or mean (×1/(2K))."},
    )
    r1: float = field(default=10.0, metadata={"help": "R1 penalty weight γ_R1 (rosinality: 10)."})
    d_reg_every: int = field(default=16, metadata={"help": "Apply R1 every this many steps (lazy regularisation)."})
    path_regularize: float = field(
        default=2.0, metadata={"help": "Path-length regularisation weight (rosinality: 2; 0 disables)."}
    )
    g_reg_every: int = field(default=4, metadata={"help": "Apply path-length regularisation every this many steps."})
    ema_decay: float = field(
        default=OFFICIAL_EMA_DECAY,
        metadata={"help": "EMA decay per step of the returned generator (rosinality: 0.5^(32/10000); 0: no EMA)."},
    )
    eval_samples: int = field(
        default=1000, metadata={"help": "Shared latents for the PUL in the metrics at the end (0 skips it)."}
    )

    retain_anchor_weight: float = field(
        default=0.0,
        metadata={
            "help": "λ_a of the retain anchor λ_a·mean‖G_θ(z) − G_θG(z)‖² on the positives' latents (not in the "
            "paper; 0 disables; needs mixing=0)."
        },
    )

    retain_anchor_space: Literal["outputs", "judge", "lpips:alex", "lpips:vgg", "lpips:squeeze"] = field(
        default="outputs",
        metadata={
            "help": "Where the retain anchor compares: outputs (the generator's raw outputs), judge (the toy judge's "
            "features of the images) or lpips:alex|vgg|squeeze."
        },
    )

    output_repulsion_weight: float = field(
        default=0.0,
        metadata={
            "help": "γ_f of the output repulsion γ_f·mean_z exp(−D(G_θ(z), G_θN(z))/τ) on fresh latents (not in the "
            "paper; 0 disables)."
        },
    )
    output_repulsion_tau: float = field(
        default=0.2, metadata={"help": "τ of the output repulsion: the distance D below which it pushes."}
    )
    output_repulsion_space: Literal["outputs", "judge", "lpips:alex", "lpips:vgg", "lpips:squeeze"] = field(
        default="outputs",
        metadata={
            "help": "Where the output repulsion compares G_θ(z) with the adapted copy's G_θN(z): outputs, judge or "
            "lpips:alex|vgg|squeeze (as retain_anchor_space)."
        },
    )

    def validate(self) -> None:
        super().validate()
        for name in ("batch_size", "num_negatives", "num_positives", "max_candidates", "fisher_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("d_reg_every", "g_reg_every", "num_adapted_models"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 < self.adapt_fraction < 1:
            raise ConfigError(f"adapt_fraction must be between 0 and 1 (MNIST: 0.4), got {self.adapt_fraction}")
        if self.max_train_steps < self.num_adapted_models + 1:
            raise ConfigError(
                f"max_train_steps={self.max_train_steps} leaves no unlearning step after adapting "
                f"{self.num_adapted_models} model(s); raise it to at least {self.num_adapted_models + 1}"
            )
        if not 0 <= self.mixing <= 1:
            raise ConfigError(f"mixing is a probability, got {self.mixing}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 disables the EMA), got {self.ema_decay}")
        for name in (
            "ewc_lambda",
            "r1",
            "path_regularize",
            "el2_scale",
            "retain_anchor_weight",
            "output_repulsion_weight",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.retain_anchor_weight > 0 and self.mixing > 0:
            raise ConfigError(
                f"retain_anchor_weight={self.retain_anchor_weight} anchors the positives' own latents, which style "
                f"mixing does not keep; set mixing=0 (got {self.mixing}) or retain_anchor_weight=0"
            )
        if self.output_repulsion_tau <= 0:
            raise ConfigError(
                f"output_repulsion_tau must be positive (the distance scale of the output repulsion), got "
                f"{self.output_repulsion_tau}"
            )
        if self.gamma <= 0:
            raise ConfigError(f"gamma must be positive (the repulsion strength), got {self.gamma}")
        if self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be 0 (skip) or positive, got {self.eval_samples}")
        if self.mixed_precision != "no" or self.gradient_checkpointing:
            raise ConfigError(
                "adapt_then_unlearn trains in fp32 without checkpointing; set mixed_precision='no' and "
                "gradient_checkpointing=False"
            )
        if self.report_to != "none":
            raise ConfigError("adapt_then_unlearn logs through the callback only; set report_to='none'")

    def stage_steps(self) -> tuple[int, int]:
        """(adaptation steps per adapted model, unlearning steps); together they make ``max_train_steps``."""
        per_model = max(1, round(self.max_train_steps * self.adapt_fraction / self.num_adapted_models))
        per_model = min(per_model, (self.max_train_steps - 1) // self.num_adapted_models)
        return per_model, self.max_train_steps - per_model * self.num_adapted_models


# ---------------------------------------------------------------- the losses (rosinality's train.py, in our words)


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic D loss: softplus(−D(x)) + softplus(D(G(z)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: softplus(−D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E‖∇_x D(x)‖² on real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def path_length_penalty(
    images: torch.Tensor, latents: torch.Tensor, mean_path_length: torch.Tensor, decay: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2's path-length regulariser (§3.2): (‖J_wᵀ y‖ − a)², y ~ N(0, I)/sqrt(HW), a an EMA of the lengths.

    Returns the penalty and the updated running mean (detached).
    """
    noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
    (grad,) = torch.autograd.grad((images * noise).sum(), latents, create_graph=True)
    lengths = grad.pow(2).sum(2).mean(1).sqrt()
    new_mean = mean_path_length + decay * (lengths.mean() - mean_path_length)
    return (lengths - new_mean).pow(2).mean(), new_mean.detach()


def ewc_penalty(
    params: dict[str, torch.Tensor],
    anchors: dict[str, torch.Tensor],
    fisher: dict[str, torch.Tensor],
    ewc_lambda: float,
) -> torch.Tensor:
    """EWC (Kirkpatrick et al. 2017) as the official ``ewc_loss``: λ/2 · Σ_i F_i (θ_i − θ*_i)²."""
    total = sum((fisher[n] * (params[n] - anchors[n]).pow(2)).sum() for n in params)
    return ewc_lambda / 2 * total


def parameter_distance(
    params: dict[str, torch.Tensor], adapted: list[dict[str, torch.Tensor]], scaling: str = "official"
) -> torch.Tensor:
    """d(θ) over K adapted models and P tensors: c · (1/P) · Σ_p Σ_k mean((θ_p − θ_{N_k,p})²).

    ``c`` is K/2 for ``scaling="official"`` (the official ``value/2*len(ckpts)``) and 1/(2K) for ``"mean"``.
    """
    k = len(adapted)
    total = sum(F.mse_loss(params[n], other[n], reduction="mean") for other in adapted for n in params)
    factor = k / 2 if scaling == "official" else 1 / (2 * k)
    return factor * total / len(params)


def repulsion_loss(distance: torch.Tensor, kind: str, gamma: float, el2_scale: float = 100.0) -> torch.Tensor:
    """R(d) added to the G loss; each form decreases as d grows, so minimising it pushes θ away from θ_N."""
    if kind == "il2":
        return gamma / distance  # official: 1 / (d · val_factor), val_factor = 1/γ
    if kind == "nl2":
        return -gamma * distance  # official: −d / val_factor
    if kind == "el2":
        return el2_scale * torch.exp(-gamma * distance)  # official: 100 · exp(−d / val_factor)
    raise ConfigError(f"repulsion={kind!r} is not one of il2, nl2, el2")


def estimate_fisher(
    generator: Generator,
    discriminator: Discriminator,
    params: dict[str, torch.Tensor],
    *,
    num_samples: int,
    mixing: float,
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of ``params`` with the discriminator logit as the log-likelihood (official
    ``estimate_fisher``): F = mean over samples of (∂D(G(z_i))/∂θ)², one backward pass per sample."""
    styles, inject_index = draw_styles(generator, num_samples, mixing)
    images, _ = generator(styles, inject_index=inject_index)
    logits = discriminator(images).view(-1)
    names = list(params)
    fisher = {n: torch.zeros_like(params[n]) for n in names}
    for i in range(num_samples):
        grads = torch.autograd.grad(logits[i], [params[n] for n in names], retain_graph=i < num_samples - 1)
        for n, g in zip(names, grads):
            fisher[n] += g.detach().pow(2) / num_samples
    return fisher


def draw_styles(generator: Generator, batch: int, mixing: float) -> tuple[list[torch.Tensor], int | None]:
    """z for a batch: two latents and a mixing index with probability ``mixing`` (rosinality's ``mixing_noise``)."""
    device = generator.device
    if mixing > 0 and torch.rand(()) < mixing:
        inject_index = int(torch.randint(1, generator.n_latent, ()))
        return list(torch.randn(2, batch, generator.style_dim, device=device).unbind(0)), inject_index
    return [torch.randn(batch, generator.style_dim, device=device)], None


def _pack(outputs: torch.Tensor, latent: bool) -> torch.Tensor:
    """Generator outputs kept for training on the CPU: pixels as uint8 (a quarter of the memory), a latent
    generator's outputs as fp16 (they are not images)."""
    if latent:
        return outputs.detach().half().cpu()
    return (to_unit_range(outputs) * 255).round().to(torch.uint8).cpu()


def _unpack(stored: torch.Tensor, device: torch.device) -> torch.Tensor:
    """What the discriminator reads, back from :func:`_pack`."""
    if stored.dtype == torch.uint8:
        return stored.to(device).float().div(127.5).sub(1.0)
    return stored.to(device).float()


# ---------------------------------------------------------------- the method


@register
class AdaptThenUnlearn(EraseMethod):
    """Adapt a copy of the GAN to the concept, then fine-tune the original on the rest, repelled from the copy."""

    name = "adapt_then_unlearn"
    config_class = ATUConfig
    model_type = "stylegan2"
    targets = ("generator",)
    summary = "Adapts a StyleGAN2 to the concept (EWC), then trains the original on the rest, repelled from it."
    paper = (
        "Adapt then Unlearn: Exploring Parameter Space Semantics for Unlearning in GANs (Tripathy et al., TMLR 2025)"
    )
    code = "https://github.com/atriguha/Adapt_Unlearn"

    def erase(
        self, bundle: GANBundle, *, data: EraseData | None = None, callback: StepCallback | None = None
    ) -> EraseResult:
        cfg: ATUConfig = self.config
        if not isinstance(bundle, GANBundle):
            raise ConfigError(f"{self.name} erases from a GANBundle (gan.load(...)), got {type(bundle).__name__}")
        if bundle.discriminator is None:
            raise ConfigError(
                f"{self.name} trains adversarially and needs the GAN's discriminator, but the bundle has none; load a "
                "checkpoint that holds one (rosinality's 'd', or a bundle folder with discriminator.safetensors)"
            )
        device = bundle.device
        meter = RunMeter(device)
        base = base_identity(bundle)
        judge = self._judge(bundle, data)
        # Built before any training, so that a space this GAN cannot use fails at once.
        anchor_distance = None
        if cfg.retain_anchor_weight > 0:
            anchor_distance = self._output_distance(bundle, cfg.retain_anchor_space, "retain_anchor_space")
        repulsion_distance = None
        if cfg.output_repulsion_weight > 0:
            repulsion_distance = self._output_distance(bundle, cfg.output_repulsion_space, "output_repulsion_space")
        adapt_steps, unlearn_steps = cfg.stage_steps()
        history: list[dict[str, float]] = []
        metrics: dict[str, Any] = {"judge": judge.describe(), "adapt_steps_per_model": adapt_steps}

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)

            # Stage 0: sort the pretrained generator's samples into negatives and positives.
            negatives, positives, anchor, found = self._collect(bundle, judge, data)
            metrics.update(found)

            # Stage 1: negative adaptation with EWC, once per adapted model (each an EMA generator θ_N, frozen).
            adapted: list[Generator] = []
            for k in range(cfg.num_adapted_models):
                adapted_generator = self._adapt(bundle, negatives, adapt_steps, history, callback)
                adapted.append(adapted_generator)
                if k == 0 and cfg.eval_samples:
                    probe = bundle.with_generator(adapted_generator.eval())
                    images = probe.sample(cfg.eval_samples, seed=cfg.seed)
                    metrics["adapted_negative_rate"] = sum(v.success for v in judge(images, cfg.concept)) / len(images)

            # Stage 2: unlearning on positives with repulsion from the adapted models.
            generator = self._unlearn(
                bundle, positives, adapted, unlearn_steps, history, callback, anchor, anchor_distance,
                repulsion_distance,
            )  # fmt: skip

        generator.eval().requires_grad_(False)
        trained = sorted(n for n, _ in generator.named_parameters())
        metrics.update(meter.metrics(sum(p.numel() for p in generator.parameters())))
        metrics["final_loss"] = history[-1]["loss"]
        if cfg.eval_samples:
            erased = bundle.with_generator(generator)
            metrics.update(
                percentage_of_unlearning(
                    bundle, erased, judge, cfg.concept, num_samples=cfg.eval_samples, seed=cfg.seed
                )
            )
        return EraseResult(
            method=self.name,
            config=cfg,
            components={"generator": generator},
            artifact_kind="gan_generator",
            sampler="stylegan2",
            trained_keys={"generator": trained},
            base=base,
            loss_history=history,
            metrics=metrics,
        )

    # ------------------------------------------------------------ helpers

    def _judge(self, bundle: GANBundle, data: EraseData | None = None):
        cfg: ATUConfig = self.config
        if data is not None and data.judge is not None:
            judge = data.judge
        elif cfg.judge is None and bundle.judge is not None:
            judge = bundle.judge
        elif (cfg.judge or "toy") == "toy":
            from pipelines.toy.judge import installed_toy_judge

            judge = installed_toy_judge()  # loaded once per process, not per call (official defect)
        else:
            # Judges other than the toy world's live in eval, a layer above the methods: the caller loads them.
            raise ConfigError(
                f"{self.name} needs the {cfg.judge!r} judge as an object: pass "
                f"data=EraseData(judge=eval.load_judge({cfg.judge!r})) (the CLI and the studio do this for you)"
            )
        if not judge.knows(cfg.concept):
            raise ConfigError(
                f"the {judge.name} judge does not know the concept {cfg.concept!r}; {judge.concept_hint()}"
            )
        return judge

    @torch.no_grad()
    def _collect(self, bundle: GANBundle, judge, data: EraseData | None):
        """Negatives and positives as the discriminator reads them, on the CPU (:func:`_pack`);
        ``data.forget_images``/``retain_images`` (in [0, 1]) replace the sampled ones when given."""
        cfg: ATUConfig = self.config
        generator, size = bundle.generator, bundle.size
        negatives: list[torch.Tensor] = []
        positives: list[torch.Tensor] = []
        candidates = sampled_negatives = 0
        anchor_latents: list[torch.Tensor] = []  # z of the sampled positives (the retain anchor's inputs)
        for name, given in (("forget_images", negatives), ("retain_images", positives)):
            images = getattr(data, name, None) if data is not None else None
            if images is None:
                continue
            if tuple(images.shape[1:]) != (3, size, size):
                raise ConfigError(
                    f"data.{name} has shape {tuple(images.shape)}; this generator needs (N, 3, {size}, {size}) images "
                    "in [0, 1]"
                )
            given.append(_pack(bundle.encode(images.clamp(0, 1)), bundle.is_latent))
        n_neg, n_pos = sum(map(len, negatives)), sum(map(len, positives))
        given_positives = n_pos
        chunk = 64  # the official feedback loop judges batches of 64
        while (n_neg < cfg.num_negatives or n_pos < cfg.num_positives) and candidates < cfg.max_candidates:
            styles, inject_index = draw_styles(generator, chunk, cfg.mixing)
            outputs = generator(styles, inject_index=inject_index)[0]
            images = _pack(outputs, bundle.is_latent)
            # The judge sees what is kept: the uint8 pixels, or a latent generator's outputs decoded.
            shown = to_unit_range(bundle.decode(outputs)) if bundle.is_latent else images.float() / 255
            verdicts = judge(shown, cfg.concept)
            is_negative = torch.tensor([v.success for v in verdicts])
            sampled_negatives += int(is_negative.sum())
            if n_neg < cfg.num_negatives:
                negatives.append(images[is_negative])
                n_neg += int(is_negative.sum())
            if n_pos < cfg.num_positives:
                positives.append(images[~is_negative])
                n_pos += int((~is_negative).sum())
                if cfg.retain_anchor_weight > 0:
                    anchor_latents.append(styles[0][~is_negative].cpu())
            candidates += chunk
        negative_images = torch.cat(negatives)[: cfg.num_negatives] if negatives else torch.empty(0)
        positive_images = torch.cat(positives)[: cfg.num_positives] if positives else torch.empty(0)
        if len(negative_images) < min(cfg.batch_size, cfg.num_negatives):
            raise ConfigError(
                f"the {judge.name} judge found only {len(negative_images)} samples showing {cfg.concept!r} in "
                f"{candidates} samples of the generator; the model barely draws it (nothing to erase), or raise "
                "max_candidates, or pass forget images in data"
            )
        if len(positive_images) < min(cfg.batch_size, cfg.num_positives):
            raise ConfigError(
                f"only {len(positive_images)} of {candidates} samples lack {cfg.concept!r}; the unlearning stage has "
                "nothing to train on: raise max_candidates or pass retain images in data"
            )
        found = {
            "num_negatives": len(negative_images),
            "num_positives": len(positive_images),
            "candidates_sampled": candidates,
        }
        if candidates:
            found["base_negative_rate"] = round(sampled_negatives / candidates, 4)
        anchor = None
        if anchor_latents:
            # The sampled positives follow any given retain images in `positives`, in sampling order.
            sampled = positive_images[given_positives:]
            anchor = (torch.cat(anchor_latents)[: len(sampled)], sampled)
        if cfg.retain_anchor_weight > 0:
            found["anchor_pairs"] = len(anchor[0]) if anchor is not None else 0
            if anchor is None:
                warnings.warn(
                    f"retain_anchor_weight={cfg.retain_anchor_weight} but no positive was sampled (the given retain "
                    "images filled num_positives, and they have no latents): the anchor is off for this run; raise "
                    "num_positives above the number of retain images to anchor sampled ones",
                    stacklevel=2,
                )
        return negative_images, positive_images, anchor, found

    def _adapt(self, bundle, negatives, steps, history, callback) -> Generator:
        """Stage 1: fine-tune a copy on the negatives with the EWC penalty; returns its EMA generator θ_N."""
        cfg: ATUConfig = self.config
        generator, discriminator, ema = self._trainable_copies(bundle)
        conv_params = {n: p for n, p in generator.named_parameters() if n.startswith("convs.")}
        anchors = {n: p.detach().clone() for n, p in conv_params.items()}
        fisher = estimate_fisher(
            generator, discriminator, conv_params, num_samples=cfg.fisher_samples, mixing=cfg.mixing
        )

        def ewc_term() -> tuple[torch.Tensor, dict[str, float]]:
            loss = ewc_penalty(conv_params, anchors, fisher, cfg.ewc_lambda)
            logs = dict.fromkeys(("loss_repulsion", "distance", "loss_anchor", "loss_output_repulsion"), 0.0)
            return loss, {"loss_ewc": loss.item(), **logs}

        self._train(generator, discriminator, ema, negatives, steps, ewc_term, 1, history, callback)
        return ema

    def _unlearn(
        self,
        bundle,
        positives,
        adapted,
        steps,
        history,
        callback,
        anchor=None,
        anchor_distance=None,
        repulsion_distance=None,
    ) -> Generator:
        """Stage 2: fine-tune the original on the positives with the repulsion from the ``adapted`` generators θ_N,
        the retain anchor on ``anchor``'s (z, G_θG(z)) pairs (compared by ``anchor_distance``, when λ_a > 0) and the
        output repulsion from θ_N's samples (compared by ``repulsion_distance``, when γ_f > 0); returns its EMA
        generator."""
        cfg: ATUConfig = self.config
        generator, discriminator, ema = self._trainable_copies(bundle)
        params = dict(generator.named_parameters())
        adapted_params = [dict(adapted_generator.named_parameters()) for adapted_generator in adapted]
        device = generator.device

        def repulsion_and_anchor() -> tuple[torch.Tensor, dict[str, float]]:
            distance = parameter_distance(params, adapted_params, cfg.distance_scaling)
            loss = repulsion_loss(distance, cfg.repulsion, cfg.gamma, cfg.el2_scale)
            logs = {"loss_ewc": 0.0, "loss_repulsion": loss.item(), "distance": distance.item()}
            logs |= {"loss_anchor": 0.0, "loss_output_repulsion": 0.0}
            if anchor is not None:
                # What the pretrained generator drew from these latents, it should still draw (the positives).
                pick = torch.randint(len(anchor[0]), (cfg.batch_size,))
                drawn, _ = generator([anchor[0][pick].to(device)])
                anchor_loss = (
                    cfg.retain_anchor_weight * anchor_distance(drawn, _unpack(anchor[1][pick], device)).mean()
                )
                loss = loss + anchor_loss
                logs["loss_anchor"] = anchor_loss.item()
            if repulsion_distance is not None:
                # Where θ_N still draws what θ draws (the concept's own latents: θ_N draws the concept), push G_θ(z)
                # away from it; where the two already differ (θ_N turned another object into the concept), exp(−D/τ)
                # is ~0 and nothing moves.
                z = torch.randn(cfg.batch_size, generator.style_dim, device=device)
                drawn, _ = generator([z])
                closeness = []
                for adapted_generator in adapted:
                    with torch.no_grad():
                        reference, _ = adapted_generator([z])
                    closeness.append(torch.exp(-repulsion_distance(drawn, reference) / cfg.output_repulsion_tau))
                output_loss = cfg.output_repulsion_weight * torch.stack(closeness).mean()
                loss = loss + output_loss
                logs["loss_output_repulsion"] = output_loss.item()
            return loss, logs

        self._train(generator, discriminator, ema, positives, steps, repulsion_and_anchor, 2, history, callback)
        return ema

    def _output_distance(
        self, bundle: GANBundle, space: str, option: str
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Per-sample D(drawn, reference) of two batches of raw generator outputs in ``space`` (``option`` names the
        config field, for errors); the reference side carries no gradient."""
        if space == "outputs":
            return lambda drawn, reference: (drawn - reference.detach()).pow(2).flatten(1).mean(1)
        distance = perceptual_distance(space, bundle, option=option, fallback="outputs")

        def perceptual(drawn: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
            # Images as [0, 1] would hold them, unclamped: a clamp has no gradient where a sample overshoots.
            with torch.no_grad():
                reference = (bundle.decode(reference) + 1) / 2
            return distance((bundle.decode(drawn) + 1) / 2, reference, reduction="none")

        return perceptual

    def _trainable_copies(self, bundle: GANBundle) -> tuple[Generator, Discriminator, Generator]:
        generator = copy.deepcopy(bundle.generator).train().requires_grad_(True)
        discriminator = copy.deepcopy(bundle.discriminator).train().requires_grad_(True)
        ema = copy.deepcopy(bundle.generator).eval().requires_grad_(False)
        return generator, discriminator, ema

    def _train(
        self,
        generator: Generator,
        discriminator: Discriminator,
        ema: Generator,
        real_images: torch.Tensor,
        steps: int,
        extra_g_loss: Callable[[], tuple[torch.Tensor, dict[str, float]]],
        stage: int,
        history: list[dict[str, float]],
        callback: StepCallback | None,
    ) -> None:
        """rosinality's StyleGAN2 step on ``real_images`` (:func:`_pack`'s form), with ``extra_g_loss`` added to the
        G loss."""
        cfg: ATUConfig = self.config
        device = generator.device
        # Lazy regularisation (StyleGAN2 §B): scale lr and β2 by c = k/(k+1) so the regularised steps average out.
        g_ratio = cfg.g_reg_every / (cfg.g_reg_every + 1) if cfg.path_regularize > 0 else 1.0
        d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1 > 0 else 1.0
        g_optim = torch.optim.Adam(generator.parameters(), lr=cfg.learning_rate * g_ratio, betas=(0.0, 0.99**g_ratio))
        d_optim = torch.optim.Adam(
            discriminator.parameters(), lr=cfg.learning_rate * d_ratio, betas=(0.0, 0.99**d_ratio)
        )
        mean_path_length = torch.zeros((), device=device)
        r1_value = 0.0
        for step in range(steps):
            real = _unpack(real_images[torch.randint(len(real_images), (cfg.batch_size,))], device)

            # Discriminator: logistic loss, and lazy R1 on real images every d_reg_every steps.
            generator.requires_grad_(False)
            discriminator.requires_grad_(True)
            styles, inject_index = draw_styles(generator, cfg.batch_size, cfg.mixing)
            fake, _ = generator(styles, inject_index=inject_index)
            d_loss = d_logistic_loss(discriminator(real), discriminator(fake))
            d_optim.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optim.step()
            if cfg.r1 > 0 and step % cfg.d_reg_every == 0:
                real.requires_grad_(True)
                r1 = r1_penalty(discriminator(real), real)
                d_optim.zero_grad(set_to_none=True)
                (cfg.r1 / 2 * r1 * cfg.d_reg_every).backward()
                d_optim.step()
                r1_value = r1.item()

            # Generator: non-saturating loss plus the stage's regulariser (EWC or repulsion).
            generator.requires_grad_(True)
            discriminator.requires_grad_(False)
            styles, inject_index = draw_styles(generator, cfg.batch_size, cfg.mixing)
            fake, _ = generator(styles, inject_index=inject_index)
            adversarial = g_nonsaturating_loss(discriminator(fake))
            extra, extra_logs = extra_g_loss()
            g_loss = adversarial + extra
            g_optim.zero_grad(set_to_none=True)
            g_loss.backward()
            g_optim.step()
            if cfg.path_regularize > 0 and step % cfg.g_reg_every == 0:
                path_batch = max(1, cfg.batch_size // 2)  # rosinality's path_batch_shrink = 2
                styles, inject_index = draw_styles(generator, path_batch, cfg.mixing)
                fake, latents = generator(styles, inject_index=inject_index, return_latents=True)
                path_loss, mean_path_length = path_length_penalty(fake, latents, mean_path_length)
                g_optim.zero_grad(set_to_none=True)
                (cfg.path_regularize * cfg.g_reg_every * path_loss).backward()
                g_optim.step()

            if cfg.ema_decay > 0:
                ema_update(ema, generator, cfg.ema_decay)
            else:
                ema.load_state_dict(generator.state_dict())
            logs = {
                "stage": float(stage),
                "loss": g_loss.item(),
                "loss_g_adv": adversarial.item(),
                "loss_d": d_loss.item(),
                "loss_r1": r1_value,
                **extra_logs,
            }
            history.append(logs)
            notify(callback, len(history), cfg.max_train_steps, logs)
        discriminator.requires_grad_(False)
