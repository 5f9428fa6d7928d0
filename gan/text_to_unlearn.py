"""Text-to-Unlearn: erasing a concept from a StyleGAN2 with a text prompt alone (experimental).

Paper: Nagasubramaniam, Karamchandani, Wu, Zhu, "Prompting Forgetting: Unlearning in GANs via Textual Guidance",
arXiv 2504.01218 (2025); a revision, "Text-to-Unlearn: Robust Concept Removal in GANs via Text Prompts", was submitted
to ICLR 2026 and withdrawn. **No reference implementation exists**: none was published, and none could be found. This
file is a re-implementation from the paper's abstract and its public reviews (reference/methods.md §6); the paper's
Algorithm 1 could not be read from this machine. Every choice the paper leaves open is listed below, with how it
was made. Treat numbers from this method as this implementation's, not the paper's.

The method, as reconstructed:

0. **Prompt embeddings.** A frozen CLIP (any backbone ``pipelines.clip.load_clip`` takes; the toy world's by default)
   embeds each prompt p: t_p = E_T(p) / ‖E_T(p)‖.
1. **Stage A, the concept's direction** (one StyleCLIP latent mapper per prompt, trained against a frozen copy G_f).
   The mapper M_p edits w+ codes, ŵ = w + s·M_p(w) (StyleCLIP's s = 0.1), and is trained on
   L_A = (1 − cos(E_I(G_f(ŵ)), t_p)) + λ_L2·MSE(ŵ, w) + λ_ID·L_ID (StyleCLIP's λ_L2 = 0.8, λ_ID = 0.1).
   The reference direction is the mean CLIP image-space change the edit makes, over a fixed set of latents:
   î_p = normalise(mean_w [E_I(G_f(ŵ)) − E_I(G_f(w))]).
2. **Stage B, directional unlearning** (StyleGAN-NADA's directional loss, pointed away from the concept). A trainable
   copy G_t of the generator is fine-tuned on the same z (and the same noise maps) as G_f:
   ΔI = E_I(G_t(z)) − E_I(G_f(z)),  L_dir = mean_p (1 − cos(ΔI, −î_p)),
   L_B = L_dir + λ_perc·L_perc(G_t(z), G_f(z)) + λ_ID·L_ID(G_t(z), G_f(z)).
3. **The paper's baseline** (``objective="clip_distance"``, its Eq. 11 as the reviews describe it): no mapper; G_t
   minimises the CLIP similarity of its images to the prompts, L = mean_p cos(E_I(G_t(z)), t_p), without the
   perceptual term.

Choices the paper leaves open, and how they were made here:

- **The sign of the directional loss.** The reviews say the unlearned generator's outputs "move against" the
  concept's direction; so G_t's change from G_f is aligned with −î (NADA aligns it with +ΔT to *add* a domain).
- **What trains.** A reviewer says the mapping network; ``train_part="mapping"`` is the default, ``"synthesis"`` and
  ``"all"`` are options.
- **The perceptual term.** LPIPS in the paper. On the toy world it is the squared distance between the toy judge's
  penultimate features (the toy world's perceptual network; measure the result with ``toy-heldout``, which this
  method never sees); on real models ``"lpips:alex"`` / ``"lpips:vgg"`` / ``"lpips:squeeze"`` (torchmetrics' LPIPS,
  whose backbone weights must already be in torchvision's cache) or ``"none"``. Its weight λ_perc is not published.
- **The identity term.** ArcFace-style for faces; here any network the caller passes as
  ``EraseData(identity_network=...)`` (images in [0, 1] to embeddings), L_ID = 1 − cos; without one it is a no-op.
- **Mapper and fine-tuning schedules.** Adam for both (StyleCLIP trains its mapper with Ranger at lr 0.5);
  fine-tuning at NADA's lr 0.002 with Adam β = (0, 0.99). ``max_train_steps`` counts the mapper steps of every
  prompt plus the fine-tuning steps, so progress covers the whole run; ``mapper_fraction`` splits them.
- **Several prompts** (multi-attribute unlearning): one mapper and one direction per prompt, the directional losses
  averaged.
- **Where the loss applies** (an addition, off by default: ``localise``). NADA's directional loss moves every
  sample; for unlearning that drags the samples without the concept along (on the toy GAN, erasing "circle" turned
  every sample yellow or into a cross). With ``localise`` each sample's directional loss is weighted by how much the
  frozen generator's sample shows the concept, read from CLIP alone, and its perceptual term by the complement:
  ``"alignment"`` scales its alignment with the prompt from 0 at the base samples' ``localise_quantile`` (10th
  percentile by default) to 1 at the mean alignment of the mapper's edits; ``"edit"`` asks how much the mapper's
  concept edit adds to it (a sample that already shows the concept gains little). It stays text-only: no judge and
  no images of the concept.
- **The first fine-tuning step** (measured here; the paper and NADA are silent). At the first step G_t = G_f, so
  ΔI = 0 and the cosine's gradient is d/eps, about 1e8 with ``F.cosine_similarity``'s default eps. Adam moves every
  weight by a full learning-rate step along that gradient's sign, and the spike in its second-moment estimate damps
  every later step. On the toy GAN the first preset's erasure *was* that first step (with a 50-step learning-rate
  warm-up the same run erased nothing), so its drop swung with the seed (circle 72 / 49 / 15 % at seeds 0-2).
  ``direction_norm_floor`` (a floor on ‖ΔI‖ in the cosine, below which the loss is linear) with ``lr_warmup_steps``
  turns the fine-tuning into an optimisation that follows its losses; the preset uses both.
- **Holding what else the samples show** (an addition: ``keep_prompts``, ``keep_lambda``). NADA's loss pushes along
  one direction, so every pushed sample lands in the same place: on the toy GAN every erased circle or diamond became
  a cross. The keep term holds CLIP's zero-shot reading of each sample among prompts the user names,
  L_keep = KL(p_f ‖ p_t) with p = softmax(τ·cos(E_I(G(z)), t_k)) at the backbone's own logit scale τ: a sample without
  the concept keeps its reading. With ``localise`` on, each sample's part is weighted by the complement of its concept
  weight, like the perceptual term: a sample that shows the concept is meant to change, and holding its reading pulls
  it to where CLIP saw it second, the same neighbour for most of them (a cross, for circles and diamonds alike on the
  toy GAN). Keep prompts that name the concept are left out, so one list (the toy preset's: every toy object) serves
  every concept. It is text-only like the rest: no judge and no images of the concept. ``keep_share_lambda`` adds its
  batch part, KL(q* ‖ q_t) of the batch's mean readings q, which holds how many samples CLIP reads as each kept value:
  where every pushed sample's second reading is the same (on the toy GAN a diamond's is a cross), only it can stop
  them all going there. Its target q* is the frozen batch's share read among the keep prompts *and* the concept's,
  with the concept's share removed and the rest renormalised, so the erased samples spread as the others already are
  (read among the keep prompts alone, a concept sample already counts as its second reading, and all of them turning
  into it would cost nothing).
- **The perceptual term on the toy world.** The toy judge's features encode the object (the judge classifies it),
  so holding them forbids the erasure: in the well-posed regime any λ_perc that mattered left the drop at 0-1 %. The
  toy preset turns it off (``perceptual="none"``); on real models the paper's LPIPS stays the choice.
- **The metric γ** (``gan.metrics.degree_of_unlearning``): the Wasserstein-1 distance between the distributions of
  CLIP image-text cosine similarities of the base and the unlearned generator, per prompt, on shared latents; which
  vision-language scorer the paper uses is not known, so the backbone is always named next to γ.

``presets["toy"]`` fits the toy world's 32x32 StyleGAN2 on a CPU: the mapper at s = 1 (StyleCLIP's 0.1 with a 10x
larger step never moved there), every generator weight trained (the toy mapping network's learning-rate multiplier of
0.01 left a mapping-only run unchanged), the well-posed fine-tuning (floor 0.1, warm-up 50, lr 0.003), ``localise``
on, no perceptual term, and the keep term over the toy objects (λ_keep 0.02, its batch part 0.3), with 160
fine-tuning steps after 200 mapper steps. The measurements behind each choice are next to the preset.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers.optimization import get_scheduler
from torch import nn

from erasure.base import EraseConfig, EraseData, EraseMethod, EraseResult, RunMeter, StepCallback, notify, register
from pipelines.artifacts import base_identity
from pipelines.clip import ClipBackbone, load_clip
from pipelines.errors import ConfigError
from pipelines.gan import GANBundle
from pipelines.perceptual import PERCEPTUAL_SPACES, perceptual_distance
from pipelines.stylegan2 import Generator
from pipelines.toy.world import OBJECTS as TOY_OBJECTS
from pipelines.toy.world import prompt_for

from .metrics import degree_of_unlearning

# StyleCLIP's mapper: ŵ = w + 0.1·M(w); its three level groups split w+ at layers 4 and 8 (coarse, medium, fine).
STYLECLIP_MAPPER_SCALE = 0.1
STYLECLIP_LEVELS = (4, 8)
PERCEPTUAL_CHOICES = ("auto", *PERCEPTUAL_SPACES, "none")


@dataclass
class TextToUnlearnConfig(EraseConfig):
    """Config of :class:`TextToUnlearn`. Defaults follow StyleCLIP's mapper and StyleGAN-NADA's fine-tuning where the
    paper is silent (module docstring); ``presets["toy"]`` fits the toy world.

    Args:
        prompts (`list[str]`): the text that names the concept; several for multi-attribute unlearning. Empty: the
            concept itself.
        clip (`str`, defaults to `"clip:toy"`): CLIP backbone (``clip:toy``, a transformers CLIP folder, a cached hub
            id, or ``open_clip:ARCH:WEIGHTS``).
        objective (`str`, defaults to `"directional"`): ``directional`` (the method) or ``clip_distance`` (the
            paper's baseline).
        max_train_steps (`int`, defaults to 600): mapper steps of every prompt plus fine-tuning steps.
        mapper_fraction (`float`, defaults to 0.5): share of the steps spent training the mappers (directional only).
        mapper_learning_rate (`float`, defaults to 0.01): Adam learning rate of the mappers.
        mapper_l2_lambda (`float`, defaults to 0.8): λ_L2 on the mapper's edit (StyleCLIP: 0.8).
        mapper_scale (`float`, defaults to 0.1): s in ŵ = w + s·M(w) (StyleCLIP: 0.1).
        direction_samples (`int`, defaults to 256): latents averaged into each direction î.
        learning_rate (`float`, defaults to 0.002): Adam learning rate of the fine-tuning (NADA: 0.002).
        batch_size (`int`, defaults to 2): latents per step (NADA and StyleCLIP: 2).
        train_part (`str`, defaults to `"mapping"`): ``mapping``, ``synthesis`` or ``all``.
        perceptual (`str`, defaults to `"auto"`): ``judge`` (the toy judge's features), ``lpips:alex|vgg|squeeze``,
            ``none``, or ``auto`` (``judge`` on the toy GAN, else ``none``).
        perceptual_lambda (`float`, defaults to 1.0): λ_perc.
        localise (`str`, defaults to `"off"`): ``off`` (the paper), ``alignment`` or ``edit`` (see above).
        localise_quantile (`float`, defaults to 0.1): with ``alignment``, the quantile of the base samples'
            alignment below which a sample is not pushed.
        id_lambda (`float`, defaults to 0.1): λ_ID (needs ``EraseData(identity_network=...)``; else no-op).
        direction_norm_floor (`float`, defaults to 1e-8): floor of ‖ΔI‖ in the directional loss's cosine (see
            ``directional_loss``; 1e-8 is ``F.cosine_similarity``'s default).
        lr_warmup_steps (`int`, defaults to 0): fine-tuning steps over which the learning rate rises linearly from 0
            (diffusers' ``constant_with_warmup``; an addition, 0 is NADA's constant rate).
        eval_samples (`int`, defaults to 512): shared latents for γ in the metrics at the end (0 skips it).
    """

    method = "text_to_unlearn"
    # Tuned on the toy StyleGAN2 (seed 0; 500 shared latents judged by toy-heldout; circle's share 66.6 % before;
    # "worst" is the largest shift of another object's or colour's share, in points). Mapper: with its L2 term summed
    # over w's 128 dimensions (a first reading) it never lowered its CLIP loss; with StyleCLIP's MSE, prompt "star",
    # 150 steps, s = 0.1 / lr 0.01 gave cos(î, t) = 0.31 and s = 1 / lr 0.001 (about the same step, steadier) 0.59.
    # Fine-tuning, 200 steps of 16 after 200 mapper steps: mapping only (lr 0.002 or 0.2): 66.6 %, no change (the toy
    # mapping network's lr multiplier is 0.01); all weights, lr 0.002: 63.4 %; lr 0.01, no perceptual term: 23.8 %,
    # worst +50 (everything turned yellow); λ_perc 1 / 10: 40 %, worst +33 (cross); λ_perc 300 / 3000: 45 % / 56 %,
    # worst +21 / +13; with localise="alignment": λ_perc 300: 14.0 %, worst +45 (colour); λ_perc 3000: 35.2 %, worst
    # +23 (crescent, where the circles went). Diamond (17.0 %), localise="alignment", λ_perc 3000: 3.2 %, but the
    # others drift into circles (+23). localise="edit": circle 39.0 % (+19 crescent), diamond 3.6 % (+22 circle;
    # training the synthesis network only: 3.4 %, +22): triangles, hearts and crescents turn into circles too.
    # localise_quantile (where the alignment weight starts; 0.1 above): 0.5: circle 51.2 % (+10 yellow), diamond
    # 3.0 % (+21 circle); 0.8: circle 65.4 % (+10 yellow), diamond 4.6 % (+13 circle): a sharper weight trades
    # erasure for the rest along the same curve, so the preset keeps 0.1.
    # Those were on the first toy GAN, which drew circles in two thirds of its samples. Retuned on the latent toy GAN
    # (issue 19: every object about 12.5 %; circle 13.8 % of 1000 latents of seed 1): the old preset (lr 0.01, λ_perc
    # 3000) drops circles by 10 % (worst +4.1); λ_perc 1000 / 300: 8 % / 9 %; 800 steps: 2 %; lr 0.02: 49 % (+7.7
    # square); lr 0.03: 73 % (+10.0 crescent), diamond 86 % (+5.7), red 31 % (+9.7); lr 0.03 with λ_perc 10000: 54 %
    # (+2.8); lr 0.04 with λ_perc 10000: 57 % (+7.8); lr 0.03 with λ_perc 5000: 61 % (+4.5), the preset. The benchmark
    # (README) says where it meets the bar (drop >= 60 %, others within 10 points).
    # Across erasure seeds 0-2 (circle; diamond; the leaderboard's GAN block, after the seeding fix) the preset drops
    # 69 / 46 / 31 %; 88 / 56 / 87 %, every other object within 8 points. Before the fix, a larger batch raised the
    # drop at most seeds but piled the pushed samples onto one neighbour
    # (diamonds turn into squares, circles into crosses): batch 32: 71 / 100 / 100 %; 100 / 91 / 79 %, the largest
    # shift +12.1 (circle) and +16 (diamond); batch 32 with λ_perc 10000: 54 / 97 / 99 %; 96 / 86 / 70 %, +12.6 and
    # +16; batch 32 at lr 0.02: circle 52 / 85 % (+5.6 / +6.9), stopped there. No setting tried holds the bar at all
    # three seeds; the preset kept the others within the bar and missed the drop at some seeds.
    # Why (circle, judged on 1000 latents of seed 1; drop at seeds 0 / 1 / 2, largest object-or-colour shift): the
    # preset 72 / 49 / 15 % (a heart +7.7 at seed 1); the preset's drop comes from Adam's first step (module
    # docstring): a 50-step warm-up leaves it at -1 / -1 / -1 %, an EMA (0.95) of the iterates at 74 / 52 / 16 %. With
    # direction_norm_floor 0.1 and lr_warmup_steps 50 (seeds 0 / 2): 76 / 91 %, but a colour moves by 13-24 points;
    # floor 0.1 without warm-up 73 / 94 % (+20 / +16 objects); floor 0.03: 76 / 79 % (+24 colour); with λ_perc 20000:
    # 60 / 82 % (+24); lr 0.01: 7 / 1 %; localise_quantile 0.5 / 0.8: 80 / 71 % and 86 / 27 % (+18 to +37 colour);
    # localise="edit": 88 / -10 % (+24 / +28 colour); the perceptual term on every sample instead of the complement of
    # the concept weight: 7 / -26 % (+16 colour). None kept the colours. (The old preset: lr 0.03, λ_perc 5000, no
    # floor, no warm-up, no keep term.)
    # The preset below: the old preset's erasure was its first step's accident, so the fine-tuning is
    # made well-posed (floor 0.1, warm-up 50) and retuned; circle / diamond at seeds 0 / 2, same latents and judge.
    # At lr 0.03 with λ_perc 5000 the loss climbed from 1 to 500-800 (the optimisation diverged: everything moved,
    # a colour by 20-35 points); at lr 0.01 / 0.003 with λ_perc 5000 the directional loss never fell (1.0 -> 1.0) and
    # the drop was 0 %: the toy judge's features, which the perceptual term holds, *are* the object, so the term
    # forbids the erasure itself (λ_perc 300 without localise: 1 %). Without it (lr 0.003) the directional loss falls
    # 1 -> 0.19 and the drop no longer depends on the seed: 95 / 93 % (localise off), 98 / 96 % (alignment), but the
    # pushed samples all become crosses (+14 to +16). The keep term (CLIP's zero-shot reading among the toy objects,
    # at the toy CLIP's own logit scale, 23.9) spreads them: λ_keep 0.01: circle 96 / 85 % (+12.2 / +9.0), diamond
    # 100 % (+14.3); 0.02: circle 86 / 73 % (+8.6 / +6.9), diamond 99 / 100 % (+13.3 cross / +11.7 heart); 0.03:
    # circle 58 / 52 % (+5.0 / +6.3), diamond 96 / 100 % (+14.0 / +9.7). A diamond goes wholesale to a cross or a
    # heart at any λ_keep tried; localise_quantile 0.3 at 0.02: diamond 100 % (+12.4), circle (seed 2) 93 % (+10.2).
    # Before the keep term: projecting the colour prompts' text span off î (13 % of î lay in it) or holding CLIP's
    # reading among colour prompts (λ_keep 1 / 10 at scale 100) in the diverging regime moved a colour by 14-35.
    # The keep term's batch part (keep_share_lambda; circle at seed 1 and diamond at seed 0 only, same latents):
    # λ_keep 0.02 with share 0.02: diamond 100 % (+12.5 heart), circle 73 % (+8.5); share 0.2: diamond 99 % (+9.3, the
    # first diamond within the bar), circle 59 % (+6.6); λ_keep 0.01 with share 0.2: diamond 99 % (+8.7), circle 44 %
    # (+4.1); share 0.2 alone: diamond 100 % (+11.1), circle 62 % (+5.4); λ_keep 0.01, share 0.2, 600 steps: diamond
    # 100 % (red +11.4), circle 48 % (+6.8). At every seed (0 / 1 / 2) with λ_keep 0.02: share 0.2: diamond 99 / 99
    # / 93 % (+9.3 / +13.4 / +8.2), circle 16 / 59 / 31 % (+1.5 / +6.6 / +3.2); share 0.1: diamond 99 / 99 / 97 %
    # (+10.5 / +8.9 / +8.6), circle 55 / 63 / 51 % (+6.2 / +8.3 / +4.3): 3 of 6 within the bar; share 0.05: diamond
    # 90 / 96 / 99 % (+10.5 / +11.1 / +10.2), circle 74 / 67 / 55 % (+9.8 / +7.9 / +5.7): 2 of 6. Share 0.1 with
    # 600 steps (400 fine-tuning): circle 62 / 84 / 89 % (+4.7 / +9.1 / +7.4), diamond 100 % at each (+13.4 / +13.8 /
    # +11.0 hearts). Those read the share among the keep prompts alone, where a diamond already counts as its second
    # reading; with the concept-aware target (zero_shot_shifts), share 0.1, the preset: circle 77 / 75 / 70 % (+8.8 /
    # +10.1 / +6.7), diamond 99 / 100 / 99 % (+10.5 / +10.3 / +10.0): every run within 10.5 points (the preset before
    # it, share 0: up to 13.3), 3 of 6 within the bar. Share 0.3: circle 70 / 73 / 58 % (+6.6 / +6.4 / +5.5), diamond
    # 100 / 99 / 100 % (+9.4 / +12.2 / +10.7); share 0.1 with λ_keep 0.03: circle 81 / 57 / 65 % (+11.0 / +7.9 /
    # +6.3), diamond 95 / 99 / 99 % (+10.5 / +8.9 / +8.5): 3 of 6 at every setting, the seed moving a run by about 10
    # points of drop and 2 of shift. What is left is the toy CLIP's: on a diamond run it reads the erased samples as
    # crosses and crescents where the held-out judge reads hearts (README). Neither a moving average of both batch
    # shares over the steps (momentum 0.5-0.97, λ 0.1-3.0: diamond's worst run +11.0 to +13.9) nor prompt ensembling
    # (zero-shot agreement with the judge 88.1-88.7 % against 88.5 % plain) moves that; nor leading each erased sample
    # to a kept object assigned by its latent (−log p_t(k(z)), λ 0.03 / 0.1: diamond +12.4 / +12.6 / +9.7, +12.5 /
    # +17.1 / −7.8; λ 0.3 and 1.0 turn a colour by 20-83 points).
    # A sharper CLIP, the lever that was left (seeds 0 / 1 / 2, latents of seed 1): the toy CLIP fine-tuned for 600
    # steps (5 minutes) on renders distorted as samples are (the judges' augmentation, half of them through the toy
    # VAE) agrees with the held-out judge's object on 90.2 % of 1000 GAN samples (the shipped one 88.6 %; the two
    # judges agree on 97.2 %), and with it the preset drops circle 45 / 65 / 50 % (+2.6 / +6.1 / +5.8) and diamond
    # 100 / 100 / 99 % (+12.7 / +17.3 / +12.3, hearts): the diamond's erased samples pile up on hearts instead of
    # crosses, so the shipped CLIP stays. Batch 32 (the batch part reads shares on twice the samples): circle 43 / 54
    # / 67 % (+3.8 / +4.9 / +7.5), diamond 100 % (+11.6 / +10.1 / +9.9): 2 of 6 within the bar.
    # Where the erased samples went, step by step (held-out judge on the fine-tuned copy every 20-40 steps; the
    # preset of that time, 200 mapper + 200 fine-tuning steps, re-run on the code after the keep term's one-read
    # refactor, which moved its numbers: drop / worst shift at step 200 of seeds 0 / 1 / 2, circle 67 / 84 / 66 %
    # (+6.1 / +10.2 / +5.6), diamond 95 / 100 / 95 % (+11.1 / +9.7 / +9.0)): at every step and seed crosses took
    # 70-90 % of the removed samples, for circles and diamonds alike, and the toy CLIP read the concept as gone
    # (-88 to -100 %) by step 60-80, when the judge's drop was 10-60 %, so no CLIP-read stopping rule can serve. The
    # cause: the keep term's per-sample part held every sample's reading, the concept's samples too, pulling each to
    # where CLIP saw it second. Weighted by the complement of the concept weight (as the perceptual term is; the
    # module docstring), at share 0.1: the erasure comes sooner (circle 74 / 66 / 74 % by step 120) but late steps
    # pile up again (step 200: diamond +11.5 / +16.3 hearts / +11.9; step 160: 5 of 6 within the bar). With share 0.3
    # the batch part spreads them: step 160, circle 69 / 62 / 72 % (+5.4 / +6.6 / +5.9), diamond 95 / 95 / 100 %
    # (+8.5 / +8.7 / +8.5), every run within the bar; step 200 loses it again (diamond seed 1 +18.7 hearts). The
    # preset: 200 mapper steps (5/9 of 360) and 160 fine-tuning steps, share 0.3. The leaderboard's GAN block (its
    # own latents) agrees: circle 67 / 64 / 73 % (+5.0 / +7.0 / +5.4), diamond 97 / 95 / 100 % (+7.4 / +6.6 / +8.2);
    # the style (solid / striped) moved by 11.3 and 14.9 points at two of the six runs. At one torch thread the six
    # runs give the same numbers to the digit. On the six objects it was not tuned on (seed 0, the benchmark's
    # latents): square / triangle / star / cross / heart / crescent 100 / 97 / 92 / 65 / 100 / 96 % (+9.0 / +8.5 /
    # +7.9 / +7.7 / +6.9 / +6.0), every one within the bar. Those numbers are one machine's: on another of the pool
    # (AMD EPYC, AVX-512; 2026-12-07), same code and seeds, the GAN block gives circle 62 / 79 / 71 % (+6.1 / +8.3 /
    # +8.0) and diamond 100 / 94 / 98 % (+9.8 / +11.4 hearts / +8.6), 5 of 6 within the bar, and the benchmark's seed
    # diamond 98 % with crosses +11.4: diamond sits near the bar and floating-point drift crosses it.
    presets = {
        "toy": {
            "max_train_steps": 360,
            "mapper_fraction": 5 / 9,  # 200 mapper steps, 160 fine-tuning steps
            "mapper_learning_rate": 0.001,
            "mapper_scale": 1.0,
            "batch_size": 16,
            "learning_rate": 0.003,
            "direction_norm_floor": 0.1,
            "lr_warmup_steps": 50,
            "train_part": "all",
            "perceptual": "none",
            "localise": "alignment",
            "keep_prompts": [prompt_for(obj) for obj in TOY_OBJECTS],  # the concept's own is left out
            "keep_lambda": 0.02,
            "keep_share_lambda": 0.3,
            "direction_samples": 256,
            "eval_samples": 256,
        }
    }

    prompts: list[str] = field(
        default_factory=list,
        metadata={"help": "Text naming the concept; several for multi-attribute unlearning (empty: the concept)."},
    )
    clip: str = field(
        default="clip:toy",
        metadata={"help": "CLIP backbone: clip:toy, a transformers CLIP folder, a cached hub id, or open_clip:A:W."},
    )
    objective: Literal["directional", "clip_distance"] = field(
        default="directional",
        metadata={"help": "directional (mapper direction, then NADA-style loss) or clip_distance (paper's baseline)."},
    )
    max_train_steps: int = field(
        default=600, metadata={"help": "Mapper steps of every prompt plus fine-tuning steps."}
    )
    mapper_fraction: float = field(
        default=0.5, metadata={"help": "Share of the steps that train the latent mappers (directional only)."}
    )
    mapper_learning_rate: float = field(default=0.01, metadata={"help": "Adam learning rate of the latent mappers."})
    mapper_l2_lambda: float = field(
        default=0.8, metadata={"help": "λ_L2 on the mapper's edit, MSE(ŵ, w) (StyleCLIP: 0.8)."}
    )
    mapper_scale: float = field(
        default=STYLECLIP_MAPPER_SCALE, metadata={"help": "s in ŵ = w + s·M(w) (StyleCLIP: 0.1)."}
    )
    direction_samples: int = field(default=256, metadata={"help": "Latents averaged into each concept direction î."})
    learning_rate: float = field(
        default=0.002, metadata={"help": "Adam learning rate of the generator fine-tuning (StyleGAN-NADA: 0.002)."}
    )
    batch_size: int = field(default=2, metadata={"help": "Latents per step (StyleCLIP, StyleGAN-NADA: 2)."})
    train_part: Literal["mapping", "synthesis", "all"] = field(
        default="mapping",
        metadata={"help": "What fine-tunes: mapping (a reviewer's reading of the paper), synthesis or all."},
    )
    perceptual: str = field(
        default="auto",
        metadata={"help": "Perceptual term: judge, lpips:alex|vgg|squeeze, none, or auto (judge on the toy GAN)."},
    )
    perceptual_lambda: float = field(default=1.0, metadata={"help": "λ_perc of the perceptual term."})
    localise: Literal["off", "alignment", "edit"] = field(
        default="off",
        metadata={
            "help": "Weight the directional loss by how much each sample shows the concept, read by CLIP (alignment: "
            "with the prompt; edit: how little the mapper's edit adds) and the perceptual term by the rest (an "
            "addition to the paper; off reproduces it)."
        },
    )
    localise_quantile: float = field(
        default=0.1,
        metadata={
            "help": "localise=alignment: the quantile of the base samples' alignment with the prompt below which a "
            "sample's weight is 0 (higher: only the samples CLIP rates most on-concept are pushed)."
        },
    )
    id_lambda: float = field(
        default=0.1, metadata={"help": "λ_ID of the identity term (StyleCLIP: 0.1); a no-op without a network."}
    )
    direction_norm_floor: float = field(
        default=1e-8,
        metadata={
            "help": "Floor of the CLIP change's norm in the directional cosine: below it the loss is linear, so its "
            "gradient is bounded at the start, where the trained generator still equals the frozen one."
        },
    )
    lr_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Fine-tuning steps over which the learning rate rises linearly from 0 (an addition; 0: constant)."
        },
    )
    keep_prompts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Text naming the values of an attribute the push must not move, e.g. 'a square' 'a star': CLIP's "
            "zero-shot reading of every sample among them is held; those naming the concept are left out (an "
            "addition to the directional objective; empty: off)."
        },
    )
    keep_lambda: float = field(
        default=1.0,
        metadata={
            "help": "λ_keep of the keep term, KL of CLIP's zero-shot reading among keep_prompts (with localise: "
            "weighted by how little each sample shows the concept)."
        },
    )
    keep_share_lambda: float = field(
        default=0.0,
        metadata={
            "help": "λ of the keep term's batch part: KL of the batch's mean zero-shot reading among keep_prompts "
            "from the frozen one without the concept's share, so that erased samples spread as the others are."
        },
    )
    eval_samples: int = field(default=512, metadata={"help": "Shared latents for γ at the end (0 skips it)."})

    def validate(self) -> None:
        super().validate()
        self.prompts = [str(p).strip() for p in self.prompts]
        if any(not p for p in self.prompts):
            raise ConfigError("a prompt is empty: give text that names the concept, e.g. --prompts 'a star'")
        if not self.clip.strip():
            raise ConfigError("clip is empty: name a CLIP backbone, e.g. clip='clip:toy'")
        for name in ("batch_size", "direction_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 < self.mapper_fraction < 1:
            raise ConfigError(f"mapper_fraction must be between 0 and 1, got {self.mapper_fraction}")
        if not 0 <= self.localise_quantile < 1:
            raise ConfigError(f"localise_quantile must be in [0, 1), got {self.localise_quantile}")
        for name in ("mapper_learning_rate", "mapper_scale"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("mapper_l2_lambda", "perceptual_lambda", "id_lambda", "keep_lambda", "keep_share_lambda"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise ConfigError(f"perceptual={self.perceptual!r} is not one of {', '.join(PERCEPTUAL_CHOICES)}")
        if self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be 0 (skip) or positive, got {self.eval_samples}")
        if self.direction_norm_floor <= 0:
            raise ConfigError(f"direction_norm_floor must be positive, got {self.direction_norm_floor}")
        if self.lr_warmup_steps < 0:
            raise ConfigError(f"lr_warmup_steps must be 0 or positive, got {self.lr_warmup_steps}")
        self.keep_prompts = [str(p).strip() for p in self.keep_prompts]
        if any(not p for p in self.keep_prompts):
            raise ConfigError("a keep prompt is empty: give text that names what to keep, e.g. 'a red shape'")
        if len(self.keep_prompts) == 1:
            raise ConfigError(
                "keep_prompts needs at least two prompts (CLIP reads each sample among them), e.g. "
                "'a red shape' 'a blue shape'"
            )
        if self.objective == "directional" and self.max_train_steps < 2 * len(self.text_prompts):
            raise ConfigError(
                f"max_train_steps={self.max_train_steps} is too few for a mapper per prompt and a fine-tuning step; "
                f"raise it to at least {2 * len(self.text_prompts)}"
            )
        if self.mixed_precision != "no" or self.gradient_checkpointing:
            raise ConfigError(
                "text_to_unlearn trains in fp32 without checkpointing; set mixed_precision='no' and "
                "gradient_checkpointing=False"
            )
        if self.report_to != "none":
            raise ConfigError("text_to_unlearn logs through the callback only; set report_to='none'")

    @property
    def text_prompts(self) -> list[str]:
        """The prompts that name the concept (the concept itself when none are given)."""
        return list(self.prompts) or [self.concept]

    def stage_steps(self) -> tuple[int, int]:
        """(mapper steps per prompt, fine-tuning steps); together they make ``max_train_steps``."""
        if self.objective == "clip_distance":
            return 0, self.max_train_steps
        n = len(self.text_prompts)
        per_prompt = max(1, round(self.max_train_steps * self.mapper_fraction / n))
        per_prompt = min(per_prompt, (self.max_train_steps - 1) // n)
        return per_prompt, self.max_train_steps - per_prompt * n


# ---------------------------------------------------------------- stage A: StyleCLIP's latent mapper


class LatentMapper(nn.Module):
    """StyleCLIP's levels mapper: per group of w+ layers (coarse, medium, fine), pixel norm and four linear layers
    with leaky ReLUs, mapping each w to an edit of the same size."""

    def __init__(self, style_dim: int, n_latent: int, depth: int = 4):
        super().__init__()
        bounds = [0, *[b for b in STYLECLIP_LEVELS if b < n_latent], n_latent]
        self.groups = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        layers = []
        for _ in self.groups:
            mlp: list[nn.Module] = []
            for i in range(depth):
                mlp.append(nn.Linear(style_dim, style_dim))
                if i < depth - 1:
                    mlp.append(nn.LeakyReLU(0.2))
            layers.append(nn.Sequential(*mlp))
        self.levels = nn.ModuleList(layers)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        outputs = []
        for (start, stop), mlp in zip(self.groups, self.levels):
            w = w_plus[:, start:stop]
            w = w * torch.rsqrt(w.pow(2).mean(-1, keepdim=True) + 1e-8)  # StyleGAN's pixel norm
            outputs.append(mlp(w))
        return torch.cat(outputs, 1)


def directional_loss(
    delta: torch.Tensor, direction: torch.Tensor, weights: torch.Tensor | None = None, norm_floor: float = 1e-8
) -> torch.Tensor:
    """StyleGAN-NADA's directional CLIP loss, 1 − cos(ΔI, d), averaged over the batch (weighted when given).

    ``norm_floor`` floors ‖ΔI‖·‖d‖ in the cosine (``F.cosine_similarity``'s eps): below it the loss is linear in ΔI,
    so its gradient stays bounded where G_t still equals G_f (ΔI = 0)."""
    per_sample = 1 - F.cosine_similarity(delta, direction.expand_as(delta), dim=-1, eps=norm_floor)
    return weighted_mean(per_sample, weights)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of per-sample ``values``, weighted by ``weights`` in [0, 1] when given (all zero: 0)."""
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum().clamp_min(1e-6)


def zero_shot_shifts(
    embedding: torch.Tensor,
    reference_embedding: torch.Tensor,
    keep_text: torch.Tensor,
    logit_scale: float,
    concept_text: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the fine-tuning moved CLIP's zero-shot reading among the keep prompts, p = softmax(logit_scale ·
    cos(E_I, t_k)) at the backbone's own temperature, read once for both parts of the keep term.

    Args:
        concept_text (`torch.Tensor`, *optional*): the prompts naming the concept, ``(P, D)``. The batch part then
            reads each sample among the keep prompts *and* these, and its target is the frozen batch's share with
            the concept's removed and the rest renormalised: the erased samples spread over the kept values as the
            others already are. Without it, a concept sample already counts towards its second reading in the
            frozen share (say every diamond's is a heart), so all of them turning into that value costs nothing.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: per sample, KL(p_f ‖ p_t) (what the kept attribute, e.g. which other
        object a sample is, looks like to CLIP), shape ``(B,)``; and for the batch, KL(q_target ‖ q_t) of the mean
        readings q = mean_b p (the share of samples CLIP reads as each kept value; q_target = q_f without
        ``concept_text``), a scalar.
    """
    kept = len(keep_text)
    every_text = keep_text if concept_text is None else torch.cat([keep_text, concept_text])
    logits_tuned = logit_scale * embedding @ every_text.T  # one read serves both parts; the first columns are kept
    logits_frozen = logit_scale * reference_embedding @ every_text.T
    per_sample = F.kl_div(
        F.log_softmax(logits_tuned[:, :kept], dim=-1),
        F.log_softmax(logits_frozen[:, :kept], dim=-1),
        log_target=True,
        reduction="none",
    ).sum(-1)
    log_p_tuned, log_p_frozen = F.log_softmax(logits_tuned, dim=-1), F.log_softmax(logits_frozen, dim=-1)
    # log q = logsumexp_b log p − log B; the target keeps the kept columns, renormalised (a no-op without concepts).
    # q_t is not renormalised: the share it still reads as the concept is missing from its kept columns and costs
    # log(1 / Σ_k q_t,k) on top of the KL, so the batch part also asks for the concept to go.
    log_q_tuned = torch.logsumexp(log_p_tuned, 0)[:kept] - math.log(len(embedding))
    log_q_target = torch.logsumexp(log_p_frozen, 0)[:kept].log_softmax(0)
    share = F.kl_div(log_q_tuned, log_q_target, log_target=True, reduction="sum")
    return per_sample, share


def prompts_not_naming(prompts: list[str], concept: str) -> list[str]:
    """``prompts`` less those that name ``concept`` (a whole-word match), so that one keep list serves every concept
    of a family: erasing "circle" with keep prompts "a circle", "a square", ... keeps "a square", ...."""
    words = concept.lower().split()
    return [p for p in prompts if not all(w in p.lower().split() for w in words)]


def concept_weights(alignment: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """How much each sample shows the concept, from its CLIP alignment with the prompt: 0 at ``low`` (a quantile of
    the base generator's, ``localise_quantile``), 1 at ``high`` (the mean alignment of the mapper's concept edits),
    linear between."""
    return ((alignment - low) / max(high - low, 1e-6)).clamp(0, 1)


def edit_weights(gain: torch.Tensor, full_gain: float) -> torch.Tensor:
    """How much each sample shows the concept, from what the mapper's concept edit adds to its alignment: a sample
    that already shows the concept gains little (weight near 1), one without it gains ``full_gain`` (the 90th
    percentile of the gains over the direction samples) or more (weight 0)."""
    return (1 - gain / max(full_gain, 1e-6)).clamp(0, 1)


# ---------------------------------------------------------------- the method


@register
class TextToUnlearn(EraseMethod):
    """Find the concept's direction in CLIP space with a latent mapper, then fine-tune the GAN against it."""

    name = "text_to_unlearn"
    config_class = TextToUnlearnConfig
    model_type = "stylegan2"
    targets = ("generator",)
    summary = "Erases a concept from a StyleGAN2 by text alone: a CLIP direction, then directional fine-tuning."
    paper = "Prompting Forgetting: Unlearning in GANs via Textual Guidance (Nagasubramaniam et al., arXiv 2504.01218)"
    code = "none published (re-implementation from the paper; experimental)"

    def check(self, model: Any, *, data: EraseData | None = None) -> None:
        if not isinstance(model, GANBundle):
            raise ConfigError(f"{self.name} erases from a GANBundle (gan.load(...)), got {type(model).__name__}")
        self._clip(model, data)

    def erase(
        self, bundle: GANBundle, *, data: EraseData | None = None, callback: StepCallback | None = None
    ) -> EraseResult:
        cfg: TextToUnlearnConfig = self.config
        if not isinstance(bundle, GANBundle):
            raise ConfigError(f"{self.name} erases from a GANBundle (gan.load(...)), got {type(bundle).__name__}")
        clip = self._clip(bundle, data)  # loaded (or refused) before anything trains
        device = bundle.device
        meter = RunMeter(device)
        base = base_identity(bundle)
        prompts = cfg.text_prompts
        mapper_steps, tune_steps = cfg.stage_steps()
        # G_f: a frozen copy, so that no gradient lands on the caller's generator.
        frozen = copy.deepcopy(bundle.generator).eval().requires_grad_(False)
        history: list[dict[str, float]] = []
        metrics: dict[str, Any] = {"clip": clip.name, "prompts": prompts, "objective": cfg.objective}
        # Loaded before the seed is set, so that no loader can shift the run's draws (the toy judge is now built off
        # the global random stream too; a cached judge once made a run depend on what ran before it).
        perceptual = self._perceptual(bundle) if cfg.objective == "directional" else None
        identity = getattr(data, "identity_network", None) if data is not None else None
        metrics["perceptual"] = cfg.perceptual if perceptual is not None else "none"
        metrics["identity"] = "given" if identity is not None and cfg.id_lambda > 0 else "none"

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            with torch.no_grad():
                text = clip.encode_text(prompts)  # t_p, (P, D)
                # Like the perceptual term, the keep term holds the directional push; the baseline is the paper's.
                keep_prompts = prompts_not_naming(cfg.keep_prompts, cfg.concept)
                directional = cfg.objective == "directional"
                keep_text = clip.encode_text(keep_prompts) if directional and len(keep_prompts) > 1 else None
                if directional and cfg.keep_prompts and keep_text is None:
                    warnings.warn(
                        f"keep_prompts leaves {len(keep_prompts)} prompt(s) once those naming {cfg.concept!r} are "
                        "left out, so the keep term is off; name at least two other values to keep",
                        UserWarning,
                        stacklevel=2,
                    )
            metrics["keep_prompts"] = keep_prompts if keep_text is not None else []
            keep_scale = clip.logit_scale  # the backbone's own zero-shot temperature

            # Stage A: one StyleCLIP mapper per prompt, and the concept direction î_p it reveals in CLIP space.
            directions: list[torch.Tensor] = []
            mappers: list[LatentMapper] = []
            levels: list[dict[str, float]] = []
            if cfg.objective == "directional":
                for index in range(len(prompts)):
                    mapper = LatentMapper(frozen.style_dim, frozen.n_latent).to(device)
                    optimizer = torch.optim.Adam(mapper.parameters(), lr=cfg.mapper_learning_rate)
                    for _ in range(mapper_steps):
                        z = torch.randn(cfg.batch_size, frozen.style_dim, device=device)
                        with torch.no_grad():
                            w_plus = frozen.get_latent(z).unsqueeze(1).expand(-1, frozen.n_latent, -1)
                            original = self._images(bundle, frozen, w_plus) if identity is not None else None
                        edit = cfg.mapper_scale * mapper(w_plus)
                        edited = self._images(bundle, frozen, w_plus + edit)
                        loss_clip = 1 - (clip.encode_images(edited) @ text[index]).mean()
                        loss_l2 = edit.pow(2).mean()  # StyleCLIP: MSE(ŵ, w)
                        loss_id = self._identity_loss(identity, edited, original)
                        loss = loss_clip + cfg.mapper_l2_lambda * loss_l2 + cfg.id_lambda * loss_id
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        logs = {
                            "stage": 1.0,
                            "loss": loss.item(),
                            "loss_clip": loss_clip.item(),
                            "loss_l2": loss_l2.item(),
                            "loss_id": loss_id.item(),
                        }
                        history.append(logs)
                        notify(callback, len(history), cfg.max_train_steps, logs)
                    direction, level = self._direction(bundle, frozen, mapper.eval(), clip, text[index])
                    directions.append(direction)
                    mappers.append(mapper.requires_grad_(False))
                    levels.append(level)
                metrics["direction_alignment"] = [
                    round(float(d @ t), 4) for d, t in zip(directions, text)
                ]  # cos(î_p, t_p): does the image-space direction point at the prompt?

            # Stage B: fine-tune a copy so that its images move against î (or away from t_p for the baseline).
            generator = copy.deepcopy(frozen).train()
            trainable = self._select(generator)
            optimizer = torch.optim.Adam(trainable, lr=cfg.learning_rate, betas=(0.0, 0.99))
            schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=cfg.lr_warmup_steps)
            for _ in range(tune_steps):
                z = torch.randn(cfg.batch_size, frozen.style_dim, device=device)
                with torch.no_grad():
                    reference = self._images(bundle, frozen, z)
                    reference_embedding = clip.encode_images(reference)
                images = self._images(bundle, generator, z)
                embedding = clip.encode_images(images)
                weights = None
                if cfg.objective == "directional":
                    delta = embedding - reference_embedding
                    if cfg.localise != "off":
                        # Push only the samples that show the concept; the rest are held by the perceptual term.
                        weights = self._concept_weights(
                            bundle, frozen, clip, z, reference_embedding, text, mappers, levels
                        )
                    loss_clip = torch.stack(
                        [directional_loss(delta, -d, weights, cfg.direction_norm_floor) for d in directions]
                    ).mean()
                else:
                    loss_clip = (embedding @ text.T).mean()  # the baseline: cos(E_I(G_t(z)), t_p), minimised
                loss_perc = images.new_zeros(())
                if perceptual is not None:
                    keep = None if weights is None else 1 - weights
                    loss_perc = perceptual(images, reference, keep)
                loss_id = self._identity_loss(identity, images, reference)
                loss_keep, loss_keep_share = images.new_zeros(()), images.new_zeros(())
                if keep_text is not None:
                    per_sample, loss_keep_share = zero_shot_shifts(
                        embedding, reference_embedding, keep_text, keep_scale, concept_text=text
                    )
                    # Held where the sample is not the concept (module docstring), as the perceptual term is.
                    loss_keep = weighted_mean(per_sample, None if weights is None else 1 - weights)
                loss = (
                    loss_clip
                    + cfg.perceptual_lambda * loss_perc
                    + cfg.id_lambda * loss_id
                    + cfg.keep_lambda * loss_keep
                    + cfg.keep_share_lambda * loss_keep_share
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                logs = {
                    "stage": 2.0,
                    "loss": loss.item(),
                    "loss_clip": loss_clip.item(),
                    "loss_perceptual": loss_perc.item(),
                    "loss_id": loss_id.item(),
                    "loss_keep": loss_keep.item(),
                    "loss_keep_share": loss_keep_share.item(),
                }
                history.append(logs)
                notify(callback, len(history), cfg.max_train_steps, logs)

        generator.eval().requires_grad_(False)
        trained = sorted(n for n, p in generator.named_parameters() if self._trains(n))
        metrics.update(meter.metrics(sum(p.numel() for p in trainable)))
        metrics["final_loss"] = history[-1]["loss"]
        if cfg.eval_samples:
            erased = bundle.with_generator(generator)
            gamma = degree_of_unlearning(bundle, erased, clip, prompts, num_samples=cfg.eval_samples, seed=cfg.seed)
            metrics["gamma"] = gamma["gamma"]
            metrics["gamma_backbone"] = gamma["backbone"]
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

    def _clip(self, bundle: GANBundle, data: EraseData | None) -> ClipBackbone:
        """The CLIP backbone (``data.clip`` when given), with a warning for prompts it would truncate."""
        cfg: TextToUnlearnConfig = self.config
        given = getattr(data, "clip", None) if data is not None else None
        clip = given if isinstance(given, ClipBackbone) else load_clip(cfg.clip, device=bundle.device)
        cut = clip.truncated_prompts(cfg.text_prompts)
        if cut:
            warnings.warn(
                f"{len(cut)} prompt(s) exceed the {clip.name} text encoder's {clip.context_length} tokens and are "
                f"cut at the end (first: {cut[0][:60]!r}); shorten them",
                UserWarning,
                stacklevel=3,
            )
        return clip

    @staticmethod
    def _images(bundle: GANBundle, generator: Generator, codes: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from z ``(B, style_dim)`` or w+ ``(B, n_latent, style_dim)``, with the generator's fixed
        noise maps (so that G_f and G_t differ only by their weights)."""
        outputs, _ = generator([codes], input_is_latent=codes.ndim == 3, randomize_noise=False)
        return bundle.decode(outputs).add(1).div(2).clamp(0, 1)

    @torch.no_grad()
    def _concept_weights(self, bundle, frozen, clip, z, reference_embedding, text, mappers, levels) -> torch.Tensor:
        """Per sample, how much it shows any of the prompts' concepts (``localise``), in [0, 1]."""
        cfg: TextToUnlearnConfig = self.config
        alignment = reference_embedding @ text.T  # (B, P)
        if cfg.localise == "alignment":
            per_prompt = [concept_weights(alignment[:, i], lv["low"], lv["high"]) for i, lv in enumerate(levels)]
        else:
            w_plus = frozen.get_latent(z).unsqueeze(1).expand(-1, frozen.n_latent, -1)
            per_prompt = []
            for i, (mapper, level) in enumerate(zip(mappers, levels)):
                edited = self._images(bundle, frozen, w_plus + cfg.mapper_scale * mapper(w_plus))
                gain = clip.encode_images(edited) @ text[i] - alignment[:, i]
                per_prompt.append(edit_weights(gain, level["full_gain"]))
        return torch.stack(per_prompt).amax(0)

    @torch.no_grad()
    def _direction(
        self, bundle: GANBundle, frozen: Generator, mapper: LatentMapper, clip: ClipBackbone, text: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """î = normalise(mean_w [E_I(G_f(w + s·M(w))) − E_I(G_f(w))]) over ``direction_samples`` latents, and the
        levels that ``localise`` reads: ``low``, the ``localise_quantile`` of the base samples' alignment with the
        prompt; ``high``, the mean alignment of the edited samples; ``full_gain``, the 90th percentile of what the edit
        adds."""
        cfg: TextToUnlearnConfig = self.config
        total = torch.zeros(text.shape[-1], device=bundle.device)
        base_alignment, edited_alignment = [], []
        for start in range(0, cfg.direction_samples, 64):
            n = min(64, cfg.direction_samples - start)
            z = torch.randn(n, frozen.style_dim, device=bundle.device)
            w_plus = frozen.get_latent(z).unsqueeze(1).expand(-1, frozen.n_latent, -1)
            edited = clip.encode_images(self._images(bundle, frozen, w_plus + cfg.mapper_scale * mapper(w_plus)))
            original = clip.encode_images(self._images(bundle, frozen, w_plus))
            total += (edited - original).sum(0)
            base_alignment.append(original @ text)
            edited_alignment.append(edited @ text)
        base_alignment, edited_alignment = torch.cat(base_alignment), torch.cat(edited_alignment)
        levels = {
            "low": float(torch.quantile(base_alignment, cfg.localise_quantile)),
            "high": float(edited_alignment.mean()),
            "full_gain": float(torch.quantile(edited_alignment - base_alignment, 0.9)),
        }
        return F.normalize(total, dim=0), levels

    def _trains(self, name: str) -> bool:
        part = self.config.train_part
        is_mapping = name.startswith("style.")
        return part == "all" or (part == "mapping") == is_mapping

    def _select(self, generator: Generator) -> list[torch.nn.Parameter]:
        params = []
        for name, param in generator.named_parameters():
            param.requires_grad_(self._trains(name))
            if self._trains(name):
                params.append(param)
        return params

    @staticmethod
    def _identity_loss(network: Any, images: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """L_ID = 1 − cos(id(G_t), id(G_f)) with the caller's identity network; zero without one."""
        if network is None or reference is None:
            return images.new_zeros(())
        return (1 - F.cosine_similarity(network(images), network(reference).detach(), dim=-1)).mean()

    def _perceptual(self, bundle: GANBundle):
        """The perceptual distance ``(images, reference) -> scalar`` the config names, or ``None``."""
        cfg: TextToUnlearnConfig = self.config
        choice = cfg.perceptual
        if choice == "auto":
            choice = "judge" if bundle.metadata.get("name_or_path") == "toy" else "none"
        if choice == "none" or cfg.perceptual_lambda == 0:
            return None
        return perceptual_distance(choice, bundle)
