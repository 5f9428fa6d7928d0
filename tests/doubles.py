"""Test doubles for GAN methods: a tiny random StyleGAN2 bundle and a judge that needs no weights.

Random generators draw nothing that a trained classifier could name, yet Adapt-then-Unlearn needs a judge that splits
samples into negatives (the concept is there) and positives. :class:`RednessJudge` stands in: an image "shows" any
concept when its red channel outweighs its blue channel by more than a threshold. That is a property a generator can
learn to change in a few steps, so tests can check that erasure moves it.
"""

from __future__ import annotations

import torch

from pipelines.gan import GANBundle
from pipelines.judge import Judge, Verdict
from pipelines.stylegan2 import Discriminator, Generator


class RednessJudge(Judge):
    """Sees the concept in an image whose mean (red − blue) exceeds ``threshold``; knows every concept.

    Args:
        threshold (`float`): decision threshold on mean(R) − mean(B) of images in [0, 1].
        sharpness (`float`, defaults to 20.0): slope of the score, ``sigmoid(sharpness · (redness − threshold))``.
    """

    name = "redness"

    def __init__(self, threshold: float, sharpness: float = 20.0):
        self.threshold = float(threshold)
        self.sharpness = float(sharpness)

    @staticmethod
    def redness(images: torch.Tensor) -> torch.Tensor:
        """mean(R) − mean(B) per image, for ``(N, 3, H, W)`` images in [0, 1]."""
        return (images[:, 0] - images[:, 2]).mean(dim=(1, 2))

    @classmethod
    def calibrated(cls, images: torch.Tensor, positive_fraction: float = 0.3) -> RednessJudge:
        """A judge for which ``positive_fraction`` of ``images`` show the concept."""
        return cls(float(torch.quantile(cls.redness(images.float()), 1 - positive_fraction)))

    def knows(self, concept: str) -> bool:
        return True

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        redness = self.redness(images)
        scores = torch.sigmoid(self.sharpness * (redness - self.threshold))
        return [
            Verdict(success=bool(r > self.threshold), score=float(s), label=concept if r > self.threshold else "other")
            for r, s in zip(redness.tolist(), scores.tolist())
        ]

    def describe(self) -> dict:
        return {"name": self.name, "threshold": self.threshold, "model": "mean(R) - mean(B) > threshold (test double)"}


def tiny_bundle(seed: int = 0, *, size: int = 16, with_judge: bool = True) -> GANBundle:
    """A random-init StyleGAN2 small enough for unit tests (a few thousand parameters), with a discriminator.

    With ``with_judge`` it carries :class:`RednessJudge`, calibrated so that about 30 % of its samples count as showing
    any concept: random generators draw nothing a real judge could name.
    """
    torch.manual_seed(seed)
    channels = {4: 16, 8: 16, 16: 8, 32: 8}
    channels = {r: c for r, c in channels.items() if r <= size}
    generator = Generator(size, style_dim=16, n_mlp=2, channels=channels).float().eval().requires_grad_(False)
    discriminator = Discriminator(size, channels=channels).float().eval().requires_grad_(False)
    bundle = GANBundle(generator=generator, discriminator=discriminator, metadata={"name_or_path": f"tiny-{seed}"})
    if with_judge:
        bundle.judge = RednessJudge.calibrated(bundle.sample(256, seed=10_000 + seed), positive_fraction=0.3)
    return bundle


def tiny_latent_bundle(seed: int = 0, *, with_judge: bool = True) -> GANBundle:
    """A random-init *latent* StyleGAN2: an 8x8x4 generator and discriminator and a tiny random ``AutoencoderKL``
    (two blocks: 8x8 latents decode to 16x16 images), with :class:`RednessJudge` on the decoded images."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    channels = {4: 16, 8: 16}
    generator = Generator(8, style_dim=16, n_mlp=2, channels=channels, image_channels=4)
    discriminator = Discriminator(8, channels=channels, image_channels=4)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
        scaling_factor=0.5,
    )
    bundle = GANBundle(
        generator=generator.float().eval().requires_grad_(False),
        discriminator=discriminator.float().eval().requires_grad_(False),
        metadata={"name_or_path": f"tiny-latent-{seed}"},
        vae=vae.float().eval().requires_grad_(False),
    )
    if with_judge:
        bundle.judge = RednessJudge.calibrated(bundle.sample(256, seed=10_000 + seed), positive_fraction=0.3)
    return bundle
