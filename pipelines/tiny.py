"""Seeded, random-init tiny Stable Diffusion pipelines (diffusers' ``get_dummy_components`` idea).

They sample in milliseconds and exercise the same code paths as a real model: the contract tests run every method
on one, and a second seed makes a "different base model" for artifact checks. The tokenizer is the real CLIP one
(written offline from open-clip's BPE file), so prompts tokenize as they do for SD v1.4.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def _tokenizer_dir() -> Path:
    from .sd import TOY_DIR

    bundled = TOY_DIR / "sd" / "tokenizer"
    if (bundled / "vocab.json").exists():
        return bundled
    from .toy.models import write_clip_tokenizer

    return write_clip_tokenizer(Path(tempfile.mkdtemp(prefix="erasure-studio-tokenizer-")))


def tiny_sd(seed: int = 0, *, hidden_size: int = 32):
    """A random-init SD pipeline: UNet (32, 64) on 8x8x4 latents, VAE 32x32 -> 8x8x4, 2-layer CLIP text encoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .toy.models import SCHEDULER_CONFIG

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=hidden_size,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=CLIPTokenizer.from_pretrained(_tokenizer_dir()),
        unet=unet.eval(),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.studio_source = {"name_or_path": f"tiny-random-sd-{seed}", "revision": None}
    return pipe
