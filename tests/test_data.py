"""Shared data and training helpers: base-model images are cached per model, prompt and seed and come back
identical; VAE latents land where asked; UNet parts select what their names say; slugs are file-name safe."""

from __future__ import annotations

import copy

import pytest
import torch

from pipelines.data import encode_images, generate_images_cached, slugify
from pipelines.sd import UNET_PARTS, select_unet_parameters


def test_cached_images_are_the_generated_ones_and_keyed_by_model(tiny_pipe, other_tiny_pipe, tmp_path):
    prompts, seeds = ["a red star", "a blue circle", "a red star"], [0, 0, 1]
    settings = dict(num_inference_steps=2, batch_size=2)
    first = generate_images_cached(tiny_pipe, prompts, seeds, tmp_path, **settings)
    assert first.images.dtype == torch.uint8 and first.images.shape == (3, 3, 32, 32)
    assert (first.generated, first.cached) == (3, 0)
    assert not torch.equal(first.images[0], first.images[2])  # another seed, another image

    calls = []

    def counting_sampler(*args, **kwargs):
        calls.append(args[1])
        raise AssertionError("a cached image was drawn again")

    again = generate_images_cached(tiny_pipe, prompts, seeds, tmp_path, sampler=counting_sampler, **settings)
    assert calls == [] and (again.generated, again.cached) == (0, 3)
    assert torch.equal(again.images, first.images)

    uncached = generate_images_cached(tiny_pipe, prompts[:1], seeds[:1], None, **settings)
    assert uncached.generated == 1 and torch.equal(uncached.images[0], first.images[0])
    other = generate_images_cached(other_tiny_pipe, prompts[:1], seeds[:1], tmp_path, **settings)
    assert other.generated == 1  # another model never reads this model's images
    more_steps = generate_images_cached(tiny_pipe, prompts[:1], seeds[:1], tmp_path, num_inference_steps=3)
    assert more_steps.generated == 1
    assert len(list(tmp_path.rglob("*.png"))) == 5
    with pytest.raises(ValueError, match="one seed per prompt"):
        generate_images_cached(tiny_pipe, prompts, seeds[:1])


def test_encode_images_accepts_uint8_and_puts_latents_where_asked(tiny_pipe):
    images = torch.rand(2, 3, 32, 32)
    latents = encode_images(tiny_pipe.vae, images)
    assert latents.dtype == torch.float32 and latents.device.type == "cpu" and latents.shape == (2, 4, 8, 8)
    quantised = (images * 255).round().to(torch.uint8)
    assert torch.equal(encode_images(tiny_pipe.vae, quantised), encode_images(tiny_pipe.vae, quantised.float() / 255))
    vae64 = copy.deepcopy(tiny_pipe.vae).double()  # the session's pipeline is never changed
    kept = encode_images(vae64, images, output_dtype=None)
    assert kept.dtype == torch.float64


def test_unet_parts_select_what_they_say(tiny_pipe):
    unet = tiny_pipe.unet
    every = select_unet_parameters(unet)
    assert list(every) == [n for n, _ in unet.named_parameters()]
    cross = select_unet_parameters(unet, "cross_attention")
    rest = select_unet_parameters(unet, "not_cross_attention")
    assert cross and all("attn2" in n for n in cross) and set(cross) | set(rest) == set(every)
    kv = select_unet_parameters(unet, "cross_attention_kv", layers_only=True)
    assert kv and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in kv)
    layers = select_unet_parameters(unet, "all", layers_only=True)
    assert not any("norm" in n for n in layers) and any("norm" in n for n in every)
    assert set(UNET_PARTS) == {"all", "cross_attention", "not_cross_attention", "cross_attention_kv"}
    with pytest.raises(ValueError, match="unknown UNet part"):
        select_unet_parameters(unet, "full")


@pytest.mark.parametrize(
    "text, limit, expected",
    [
        ("A photo of a nude person", None, "a-photo-of-a-nude-person"),
        ("  Van Gogh, starry night!", 8, "van-gogh"),
        ("!!!", None, "empty"),
    ],
)
def test_slugify(text, limit, expected):
    assert slugify(text, limit) == expected
