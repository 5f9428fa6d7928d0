"""Our StyleGAN2: shapes, truncation, style mixing, rosinality key layout, and the safe checkpoint loader."""

from __future__ import annotations

import argparse
import collections
import json

import pytest
import torch
from safetensors.torch import save_file

import gan
from pipelines.errors import ArtifactError, ModelNotFoundError, StudioError
from pipelines.gan import GANBundle, UnsafeCheckpointError, save_bundle, save_generator
from pipelines.stylegan2 import Blur, Discriminator, Generator, Upsample

SMALL = {4: 16, 8: 16, 16: 8}


def small_generator(seed: int = 0, size: int = 16) -> Generator:
    torch.manual_seed(seed)
    g = Generator(size, style_dim=16, n_mlp=2, channels={r: c for r, c in SMALL.items() if r <= size})
    with torch.no_grad():  # untrained noise strengths are zero; make the noise inputs matter in the tests
        for name, p in g.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.1)
    return g.eval()


def small_discriminator(seed: int = 0, size: int = 16) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(size, channels={r: c for r, c in SMALL.items() if r <= size}).eval()


def test_generator_and_discriminator_shapes():
    g, d = small_generator(), small_discriminator()
    z = torch.randn(6, 16)
    images, latents = g([z], return_latents=True)
    assert images.shape == (6, 3, 16, 16)
    assert latents.shape == (6, g.n_latent, 16) and g.n_latent == 6 and g.num_layers == 5
    assert d(images).shape == (6, 1)  # 6 is not a multiple of the stddev group of 4: the group shrinks to 3
    assert d(images[:1]).shape == (1, 1)


def test_state_dict_keys_follow_rosinality_layout():
    g = Generator(8, style_dim=8, n_mlp=2, channels={4: 8, 8: 4})
    expected_g = [
        "style.1.weight", "style.1.bias", "style.2.weight", "style.2.bias",
        "input.input",
        "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
        "conv1.noise.weight", "conv1.activate.bias",
        "to_rgb1.bias", "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight", "to_rgb1.conv.modulation.bias",
        "convs.0.conv.weight", "convs.0.conv.blur.kernel", "convs.0.conv.modulation.weight",
        "convs.0.conv.modulation.bias", "convs.0.noise.weight", "convs.0.activate.bias",
        "convs.1.conv.weight", "convs.1.conv.modulation.weight", "convs.1.conv.modulation.bias",
        "convs.1.noise.weight", "convs.1.activate.bias",
        "to_rgbs.0.bias", "to_rgbs.0.upsample.kernel", "to_rgbs.0.conv.weight",
        "to_rgbs.0.conv.modulation.weight", "to_rgbs.0.conv.modulation.bias",
        "noises.noise_0", "noises.noise_1", "noises.noise_2",
    ]  # fmt: skip
    assert list(g.state_dict()) == expected_g
    state = g.state_dict()
    assert state["convs.0.conv.weight"].shape == (1, 4, 8, 3, 3)
    assert state["to_rgbs.0.conv.weight"].shape == (1, 3, 4, 1, 1)
    assert state["noises.noise_0"].shape == (1, 1, 4, 4) and state["noises.noise_2"].shape == (1, 1, 8, 8)

    d = Discriminator(8, channels={4: 8, 8: 4})
    expected_d = [
        "convs.0.0.weight", "convs.0.1.bias",
        "convs.1.conv1.0.weight", "convs.1.conv1.1.bias",
        "convs.1.conv2.0.kernel", "convs.1.conv2.1.weight", "convs.1.conv2.2.bias",
        "convs.1.skip.0.kernel", "convs.1.skip.1.weight",
        "final_conv.0.weight", "final_conv.1.bias",
        "final_linear.0.weight", "final_linear.0.bias", "final_linear.1.weight", "final_linear.1.bias",
    ]  # fmt: skip
    assert list(d.state_dict()) == expected_d
    assert d.state_dict()["final_conv.0.weight"].shape == (8, 8 + 1, 3, 3)  # + the minibatch-stddev channel


def test_default_widths_are_rosinalitys_table():
    g = Generator(64, style_dim=8, n_mlp=1, channel_multiplier=1)
    assert g.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256}


def test_resampling_filters_keep_a_constant_image_constant():
    ones = torch.ones(1, 2, 8, 8)
    up = Upsample((1, 3, 3, 1))(ones)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12), atol=1e-6)
    blurred = Blur((1, 3, 3, 1), pad=(1, 2))(ones)
    assert torch.allclose(blurred[..., 2:-2, 2:-2], torch.ones(1, 2, 4, 4), atol=1e-6)


def test_truncation_pulls_latents_to_the_mean():
    g = small_generator()
    z = torch.randn(4, 16)
    center = g.mean_latent(512, generator=torch.Generator().manual_seed(0))
    _, w = g([z], return_latents=True, randomize_noise=False)
    _, w_half = g([z], return_latents=True, truncation=0.5, truncation_latent=center, randomize_noise=False)
    assert torch.allclose(w_half - center, 0.5 * (w - center), atol=1e-5)
    # ψ = 0: every sample collapses onto w̄, so with fixed noise every image is the same.
    images, _ = g([z], truncation=0.0, truncation_latent=center, randomize_noise=False)
    assert torch.allclose(images, images[:1].expand_as(images), atol=1e-5)
    with pytest.raises(ValueError, match="truncation_latent"):
        g([z], truncation=0.5)


def test_style_mixing_switches_latents_at_the_inject_index():
    g = small_generator()
    z1, z2 = torch.randn(3, 16), torch.randn(3, 16)
    w1, w2 = g.get_latent(z1), g.get_latent(z2)
    _, latents = g([z1, z2], inject_index=2, return_latents=True, randomize_noise=False)
    assert torch.allclose(latents[:, :2], w1[:, None].expand(-1, 2, -1))
    assert torch.allclose(latents[:, 2:], w2[:, None].expand(-1, g.n_latent - 2, -1))
    only_first, _ = g([z1], randomize_noise=False)
    mixed_at_end, _ = g([z1, z2], inject_index=g.n_latent, randomize_noise=False)
    mixed_early, _ = g([z1, z2], inject_index=2, randomize_noise=False)
    assert torch.allclose(only_first, mixed_at_end, atol=1e-6)
    assert not torch.allclose(only_first, mixed_early, atol=1e-3)


def test_bundle_samples_are_deterministic_per_seed_and_in_unit_range():
    bundle = GANBundle(generator=small_generator())
    a, b, c = bundle.sample(5, seed=1), bundle.sample(5, seed=1), bundle.sample(5, seed=2)
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 1
    truncated = bundle.sample(5, seed=1, truncation=0.5)
    assert torch.equal(truncated, bundle.sample(5, seed=1, truncation=0.5)) and not torch.allclose(truncated, a)
    assert bundle.studio_source == {"name_or_path": None, "revision": None}


def _rosinality_checkpoint(g: Generator, d: Discriminator, **extra) -> dict:
    args = argparse.Namespace(size=16, latent=16, n_mlp=2, channel_multiplier=2, batch=16, lr=0.002, path="lmdb")
    return {
        "g": g.state_dict(),
        "d": d.state_dict(),
        "g_ema": g.state_dict(),
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0, 1]}]},
        "d_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0, 1]}]},
        "args": args,
        "ada_aug_p": 0.0,
        **extra,
    }


def test_rosinality_checkpoint_loads_through_the_safe_loader(tmp_path):
    g, d = small_generator(), small_discriminator()
    path = tmp_path / "550000.pt"
    torch.save(_rosinality_checkpoint(g, d), path)
    bundle = gan.load(path)
    assert bundle.generator.config["channels"] == {"4": 16, "8": 16, "16": 8}
    assert (bundle.generator.size, bundle.generator.style_dim, bundle.generator.n_mlp) == (16, 16, 2)
    assert bundle.metadata["format"] == "rosinality" and bundle.metadata["args"]["latent"] == 16
    assert bundle.studio_source["name_or_path"] == str(path)
    reference = GANBundle(generator=g)
    assert torch.allclose(bundle.sample(3, seed=4), reference.sample(3, seed=4), atol=1e-6)
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(bundle.discriminator(x), d(x), atol=1e-6)
    # An older checkpoint without g_ema falls back to g.
    checkpoint = _rosinality_checkpoint(g, d)
    del checkpoint["g_ema"]
    torch.save(checkpoint, tmp_path / "old.pt")
    assert gan.load(tmp_path / "old.pt").metadata["generator_key"] == "g"


_UNPICKLE_CALLS: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLE_CALLS.append(tag)
    return tag


class Payload:
    """Unpickling this calls ``_record_unpickle``: a stand-in for a malicious ``__reduce__``."""

    def __reduce__(self):
        return (_record_unpickle, ("code ran",))


class SneakyDict(collections.OrderedDict):
    pass


@pytest.mark.parametrize("payload", [Payload(), SneakyDict(a=torch.zeros(1))], ids=["reduce", "dict-subclass"])
def test_checkpoint_with_other_pickled_objects_is_refused(tmp_path, payload):
    g, d = small_generator(), small_discriminator()
    path = tmp_path / "evil.pt"
    torch.save(_rosinality_checkpoint(g, d, extra=payload), path)
    with pytest.raises(UnsafeCheckpointError, match="pickled object") as info:
        gan.load(path)
    assert isinstance(info.value, StudioError)
    assert "\n" not in str(info.value)
    assert _UNPICKLE_CALLS == [], "the loader ran code from the checkpoint"


def test_unreadable_checkpoint_is_an_artifact_error_not_a_security_one(tmp_path):
    (tmp_path / "junk.pt").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ArtifactError, match="not a readable PyTorch checkpoint") as info:
        gan.load(tmp_path / "junk.pt")
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_export_rosinality_round_trips(tmp_path):
    bundle = GANBundle(generator=small_generator(1), discriminator=small_discriminator(1))
    path = gan.export_rosinality(bundle, tmp_path / "export.pt")
    with torch.serialization.safe_globals([argparse.Namespace]):
        raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "d", "args"}
    assert isinstance(raw["args"], argparse.Namespace)
    assert (raw["args"].size, raw["args"].latent, raw["args"].n_mlp) == (16, 16, 2)
    assert list(raw["g_ema"]) == list(bundle.generator.state_dict())
    again = gan.load(path)
    assert torch.allclose(again.sample(4, seed=0), bundle.sample(4, seed=0), atol=1e-6)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(again.discriminator(x), bundle.discriminator(x), atol=1e-6)


def test_safetensors_file_and_bundle_folder_load_back(tmp_path):
    bundle = GANBundle(generator=small_generator(2), discriminator=small_discriminator(2), metadata={"note": "x"})
    info = save_generator(bundle.generator, tmp_path / "g.safetensors")
    assert info["file"] == "g.safetensors" and info["config"]["style_dim"] == 16
    from_file = gan.load(tmp_path / "g.safetensors")
    assert torch.equal(from_file.sample(3, seed=5), bundle.sample(3, seed=5))

    # Without a config anywhere, the architecture is inferred from the tensor shapes.
    save_file({k: v.contiguous() for k, v in bundle.generator.state_dict().items()}, tmp_path / "bare.safetensors")
    assert torch.equal(gan.load(tmp_path / "bare.safetensors").sample(3, seed=5), bundle.sample(3, seed=5))

    folder = save_bundle(bundle, tmp_path / "bundle")
    loaded = gan.load(folder)
    assert loaded.discriminator is not None and loaded.metadata["note"] == "x"
    assert json.loads((folder / "config.json").read_text())["format"] == "erasure-studio/stylegan2"
    assert torch.equal(loaded.sample(3, seed=5), bundle.sample(3, seed=5))


def test_missing_models_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no StyleGAN2"):
        gan.load(tmp_path / "nothing.pt")
    monkeypatch.setattr("pipelines.sd.TOY_DIR", tmp_path)
    with pytest.raises(ModelNotFoundError, match="erasure-studio toy build --stages gan"):
        gan.load("toy")


def test_a_generator_and_discriminator_of_vae_latents():
    """``image_channels=4``: a generator of 8x8x4 VAE latents and a discriminator that reads them (issue 19's latent
    GAN); the config round-trips, and an RGB network's config stays rosinality's (no new key)."""
    generator = Generator(size=8, style_dim=16, n_mlp=2, channels={4: 8, 8: 8}, image_channels=4)
    latents, _ = generator([torch.randn(2, 16)])
    assert latents.shape == (2, 4, 8, 8)
    assert Generator.from_config(generator.config).config == generator.config
    discriminator = Discriminator(size=8, channels={4: 8, 8: 8}, image_channels=4)
    assert discriminator(latents).shape == (2, 1)
    assert "image_channels" not in Generator(size=8, style_dim=16, n_mlp=2, channels={4: 8, 8: 8}).config


def test_one_hot_blocks_read_the_scene_z_names_and_round_trip(tmp_path):
    """``one_hot_blocks``: a block of z reaches the mapping network as the one-hot of its arg-max, so two z that
    name the same choice map to the same w; the option survives a bundle folder, and is absent from a stock config."""
    torch.manual_seed(0)
    generator = Generator(size=8, style_dim=16, n_mlp=2, channels={4: 8, 8: 8}, one_hot_blocks=[(0, 4), (4, 3)])
    z = torch.randn(1, 16)
    same_choice = z.clone()
    same_choice[0, :4] = torch.tensor([0.0, 0.0, 0.0, 0.0]).index_fill(0, z[0, :4].argmax(), 9.0)
    other_choice = z.clone()
    other_choice[0, :4] = z[0, :4].roll(1)
    assert torch.allclose(generator.get_latent(z), generator.get_latent(same_choice))
    assert not torch.allclose(generator.get_latent(z), generator.get_latent(other_choice))
    with pytest.raises(ValueError, match="one_hot_blocks"):
        Generator(size=8, style_dim=16, n_mlp=2, channels={4: 8, 8: 8}, one_hot_blocks=[(14, 4)])
    save_bundle(GANBundle(generator=generator), tmp_path / "bundle")
    loaded = gan.load(str(tmp_path / "bundle")).generator
    assert loaded.config["one_hot_blocks"] == [[0, 4], [4, 3]]
    assert torch.allclose(loaded.get_latent(other_choice), generator.get_latent(other_choice), atol=1e-6)
    assert "one_hot_blocks" not in small_generator().config


def test_save_bundle_replaces_a_bundle_whole_or_not_at_all(tmp_path):
    """``save_bundle`` writes under a staging name and renames: a failed save leaves the previous bundle loadable and
    no staging folder behind; a successful one replaces it."""
    folder = save_bundle(GANBundle(generator=small_generator(0)), tmp_path / "bundle")
    before = gan.load(str(folder)).generator.state_dict()

    class BrokenVAE:
        def to(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_bundle(GANBundle(generator=small_generator(1), vae=BrokenVAE()), folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    kept = gan.load(str(folder)).generator.state_dict()
    assert all(torch.equal(kept[k], before[k]) for k in before)
    save_bundle(GANBundle(generator=small_generator(1)), folder)
    replaced = gan.load(str(folder)).generator.state_dict()
    assert any(not torch.equal(replaced[k], before[k]) for k in before)
