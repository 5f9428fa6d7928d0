"""Frechet and kernel distances: zero for a set against itself, growing with a shift, labelled by backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from eval.fid import (
    _RoundToUint8,
    find_inception_weights,
    frechet_distance,
    kernel_distance,
    load_feature_extractor,
)
from pipelines.errors import ConfigError, MissingWeightsError, StudioError

SHIFTS = (0.05, 0.1, 0.2, 0.4)


def toy_renders(n: int, seed: int) -> torch.Tensor:
    from pipelines.toy.world import make_dataset

    images, _ = make_dataset(n, seed=seed, split="all")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def brighter(images: torch.Tensor, shift: float) -> torch.Tensor:
    return (images + shift).clamp(0, 1)


class RandomConvFeatures(nn.Module):
    """A fixed, seeded random CNN: an always-available stand-in feature extractor (32-d)."""

    num_features = 32

    def __init__(self):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(123)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        torch.random.set_rng_state(generator_state)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2 - 1).flatten(1)


@pytest.fixture(scope="module")
def renders() -> torch.Tensor:
    return toy_renders(48, seed=0)


def _features(name: str):
    if name == "toy":
        return load_feature_extractor("toy")
    return load_feature_extractor(RandomConvFeatures())


@pytest.mark.parametrize("features", ["toy", "random-cnn"])
def test_frechet_distance_is_zero_on_itself_and_grows_with_the_shift(renders, features):
    extractor = _features(features)
    itself = frechet_distance(renders, renders, features=extractor)
    assert itself.value == pytest.approx(0.0, abs=1e-3)
    distances = [frechet_distance(renders, brighter(renders, s), features=extractor).value for s in SHIFTS]
    assert distances[0] > itself.value + 1e-3
    assert all(b > a for a, b in zip(distances, distances[1:])), distances
    assert itself.num_real == itself.num_fake == 48


def test_toy_features_are_labelled_fd_toy_and_separate_concepts():
    from pipelines.toy.world import Scene, render

    def scenes(obj: str, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        arrays = [np.asarray(render(Scene(obj, "red", "solid", "black"), rng)) for _ in range(48)]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255

    same = frechet_distance(scenes("star", 0), scenes("star", 1), features="toy")
    other = frechet_distance(scenes("star", 0), scenes("circle", 1), features="toy")
    assert same.metric == "FD-toy" and same.feature_dim == 128 and not same.comparable_to_published
    assert other.value > 5 * same.value


def test_custom_module_result_carries_backend_layer_and_counts(renders):
    result = frechet_distance(renders[:30], renders[30:48], features=RandomConvFeatures())
    assert result.metric == "FD-RandomConvFeatures"
    assert result.feature_dim == 32
    assert (result.num_real, result.num_fake) == (30, 18)
    assert "torchmetrics" in result.backend and "FrechetInceptionDistance" in result.backend
    assert not result.comparable_to_published
    assert set(result.to_dict()) >= {"metric", "value", "backend", "features", "feature_dim", "num_real", "num_fake"}


def test_kernel_distance_is_seeded_caps_the_subset_size_and_grows_with_the_shift(renders):
    features = RandomConvFeatures()
    near = kernel_distance(renders[:24], renders[24:], features=features, subsets=20)
    again = kernel_distance(renders[:24], renders[24:], features=features, subsets=20)
    far = kernel_distance(renders[:24], brighter(renders[24:], 0.4), features=features, subsets=20)
    assert near.metric == "KD-RandomConvFeatures" and near.std is not None
    assert near.value == again.value  # seeded subsets, independent of the global RNG
    assert "20 subsets of 24 images" in near.note  # subset size 1000 lowered to the sample count
    assert far.value > near.value + 10 * max(near.std, 1e-6)


def test_float_uint8_and_pil_inputs_agree_and_bad_ranges_are_refused(renders):
    from pipelines.images import to_pil

    features = RandomConvFeatures()
    images = renders[:16]
    as_uint8 = (images * 255).round().to(torch.uint8)
    reference = frechet_distance(images, renders[16:32], features=features).value
    assert frechet_distance(as_uint8, renders[16:32], features=features).value == pytest.approx(reference, rel=1e-5)
    assert frechet_distance(to_pil(images), renders[16:32], features=features).value == pytest.approx(
        reference, rel=1e-5
    )
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        frechet_distance(images * 2 - 1, images, features=features)
    with pytest.raises(ConfigError, match="at least 2"):
        frechet_distance(images[:1], images, features=features)


def test_inception_input_is_rounded_like_a_saved_png():
    """torchmetrics' normalize=True truncates ((x * 255).byte()); our Inception wrapper rounds, as PNG saving does."""
    from pipelines.images import to_pil

    captured = {}

    class Capture(nn.Module):
        def forward(self, x):
            captured["x"] = x
            return torch.zeros(len(x), 4)

    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _RoundToUint8(Capture(), 4)(images)
    png = torch.from_numpy(np.stack([np.asarray(im) for im in to_pil(images)])).permute(0, 3, 1, 2)
    assert captured["x"].dtype == torch.uint8
    assert torch.equal(captured["x"], png)
    assert not torch.equal((images * 255).byte(), png)  # what normalize=True would have fed Inception


def test_missing_inception_weights_give_a_clear_error(tmp_path, monkeypatch, renders):
    monkeypatch.delenv("ERASURE_STUDIO_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError) as info:
        frechet_distance(renders[:4], renders[4:8], features="inception")
    message = str(info.value)
    assert isinstance(info.value, StudioError)  # the CLI prints it as one line and exits 2
    assert "weights-inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "effnet-lite0" in message  # the offline alternative
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        find_inception_weights(tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="Inception layer"):
        load_feature_extractor("inception-100")


def test_effnet_lite0_features_load_offline_and_are_labelled(renders):
    extractor = load_feature_extractor("effnet-lite0")
    assert (extractor.frechet_metric, extractor.kernel_metric, extractor.dim) == (
        "FD-EffNetLite0",
        "KD-EffNetLite0",
        1280,
    )
    features = extractor.module(renders[:4])
    assert features.shape == (4, 1280) and torch.isfinite(features).all()
    assert torch.equal(features, extractor.module(renders[:4]))  # eval mode: no dropout, frozen BatchNorm


@pytest.mark.slow
def test_fd_effnetlite0_is_labelled_and_grows_with_the_shift(renders):
    # One distance only: torchmetrics' 1280x1280 eigen-decomposition dominates the cost (10-35 s on 2 cores).
    shifted = frechet_distance(renders[:8], brighter(renders[:8], 0.3), features="effnet-lite0")
    assert shifted.metric == "FD-EffNetLite0" and not shifted.comparable_to_published
    assert shifted.value > 1.0


@pytest.mark.slow
def test_standard_fid_with_local_inception_weights(tmp_path, renders):
    """The torch-fidelity route end to end with a random-weight file in the standard format (needs torch-fidelity)."""
    pytest.importorskip("torch_fidelity")
    from unittest import mock

    from torchmetrics.image.fid import NoTrainInceptionV3

    with mock.patch("torch.load", return_value={}), mock.patch.object(NoTrainInceptionV3, "load_state_dict"):
        net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path="x"
        )
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), weights)
    result = frechet_distance(renders[:4], renders[:4], features="inception", inception_weights=weights)
    assert result.metric == "FID" and result.feature_dim == 2048 and result.comparable_to_published
    assert result.value == pytest.approx(0.0, abs=1e-3)
    assert frechet_distance(renders[:4], renders[4:8], features="inception-64", inception_weights=weights).metric == (
        "FID-64"
    )
