"""A latent StyleGAN2 (the generator draws VAE latents, a frozen VAE decodes them): sampling, the bundle folder,
export, and Adapt-then-Unlearn on the generator's outputs (tests/doubles.py: tiny_latent_bundle)."""

from __future__ import annotations

import json

import pytest
import torch
from doubles import tiny_latent_bundle

import erasure
import gan
from pipelines.artifacts import apply_artifact
from pipelines.errors import ArtifactError, ConfigError
from pipelines.gan import VAE_FOLDER, load_bundle_folder, save_bundle

# The tiny latent GAN decodes to 16x16 images, which the toy preset's anchor (the toy judge's features) cannot read.
FAST = {
    "num_negatives": 32, "num_positives": 64, "fisher_samples": 4, "eval_samples": 0, "batch_size": 8,
    "retain_anchor_space": "outputs", "output_repulsion_space": "outputs",
}  # fmt: skip


@pytest.fixture(scope="module")
def bundle():
    return tiny_latent_bundle(seed=0)


def test_samples_are_decoded_images_of_the_vae_size(bundle):
    assert bundle.is_latent and bundle.generator.size == 8 and bundle.size == 16
    images = bundle.sample(5, seed=1)
    assert images.shape == (5, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, bundle.sample(5, seed=1))
    # encode() is what the discriminator reads: latents of the generator's shape.
    assert bundle.encode(images).shape == (5, 4, 8, 8)


def test_the_bundle_folder_carries_the_vae(bundle, tmp_path):
    folder = save_bundle(bundle, tmp_path / "latent-gan")
    assert json.loads((folder / "config.json").read_text())["vae"] == VAE_FOLDER
    assert (folder / VAE_FOLDER / "diffusion_pytorch_model.safetensors").is_file()
    loaded = gan.load(folder)
    assert loaded.is_latent and loaded.size == 16
    assert torch.allclose(loaded.sample(4, seed=2), bundle.sample(4, seed=2), atol=1e-6)


def test_a_broken_vae_reference_is_a_clear_error(bundle, tmp_path):
    folder = save_bundle(bundle, tmp_path / "latent-gan")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vae": "../elsewhere"}))
    with pytest.raises(ArtifactError, match="VAE folder"):
        load_bundle_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / VAE_FOLDER / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="latent GAN bundle"):
        load_bundle_folder(folder)


def test_rosinality_export_refuses_a_latent_generator(bundle, tmp_path):
    with pytest.raises(ConfigError, match="VAE latents"):
        gan.export_rosinality(bundle, tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_adapt_then_unlearn_trains_on_latents_and_the_artifact_keeps_the_vae(bundle, tmp_path):
    result = erasure.erase("adapt_then_unlearn", bundle, preset="toy", concept="circle", max_train_steps=2, **FAST)
    assert result.metrics["num_negatives"] == 32
    path = result.save(tmp_path / "atu", base_model=bundle)
    applied = apply_artifact(bundle, path)
    assert applied.vae is bundle.vae and applied.size == 16
    assert torch.equal(applied.sample(4, seed=3), bundle.with_generator(result.components["generator"]).sample(4, 3))
    assert not torch.allclose(applied.sample(4, seed=3), bundle.sample(4, seed=3))


def test_forget_images_are_encoded_for_a_latent_discriminator(bundle):
    images = bundle.sample(40, seed=4)
    data = erasure.EraseData(forget_images=images)
    result = erasure.erase(
        "adapt_then_unlearn", bundle, preset="toy", concept="circle", max_train_steps=2, data=data, **FAST
    )
    assert result.metrics["num_negatives"] == 32
    wrong = erasure.EraseData(forget_images=torch.rand(40, 3, 8, 8))  # the latent grid's size, not the images'
    with pytest.raises(ConfigError, match=r"\(N, 3, 16, 16\)"):
        erasure.erase(
            "adapt_then_unlearn", bundle, preset="toy", concept="circle", max_train_steps=2, data=wrong,
            retain_anchor_space="outputs", output_repulsion_space="outputs",
        )  # fmt: skip
