"""SalUn: the mask keeps exactly the requested fraction (ties by flat index), entries outside it never move, only
tensors with salient entries are saved, a saved mask is reused as is, generated images are cached, and on the toy
world erasing "star" removes most stars while other objects stay within 10 points."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import needs_toy_sd
from safetensors.torch import load_file, save_file

import erasure
from erasure import salun
from erasure.base import EraseData
from erasure.salun import (
    default_prompts,
    make_optimizer,
    pack_mask,
    top_fraction_mask,
    unpack_mask,
)
from erasure.salun import salun_unet_parameters as select_unet_parameters
from pipelines.errors import ConfigError, MissingDependencyError

# A run that takes a second or two on the tiny pipeline: 2 + 2 generated images at 2 sampler steps, nothing cached.
TINY = {
    "prompt_set": "toy",
    "num_forget_images": 2,
    "num_retain_images": 2,
    "batch_size": 2,
    "generation_steps": 2,
    "cache_dir": None,
}


def _reference_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """The definition, by a full stable sort: (score descending, flat index ascending), keep round(f·N)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()]).double().numpy()
    keep = round(fraction * flat.size)
    order = np.lexsort((np.arange(flat.size), -flat))  # last key is primary
    chosen = np.zeros(flat.size, dtype=bool)
    chosen[order[:keep]] = True
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = torch.from_numpy(chosen[start : start + s.numel()].reshape(s.shape))
        start += s.numel()
    return out


def _erase(pipe, **overrides):
    return erasure.erase("salun", pipe, concept="star", seed=0, **{**TINY, **overrides})


# ---------------------------------------------------------------- the mask


def test_mask_breaks_ties_by_flat_index():
    scores = {"a": torch.tensor([3.0, 1.0, 1.0, 1.0]), "b": torch.tensor([[1.0, 1.0], [2.0, 0.0]])}
    masks = top_fraction_mask(scores, 0.5)  # keep 4 of 8: 3, 2, then the first two 1s in flat order (a[1], a[2])
    assert masks["a"].tolist() == [True, True, True, False]
    assert masks["b"].tolist() == [[False, False], [True, False]]


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.37, 0.999, 1.0])
def test_mask_keeps_exactly_the_fraction_with_many_ties(fraction):
    generator = torch.Generator().manual_seed(1)
    # Few distinct values, so almost every threshold falls inside a run of ties; one all-zero tensor too.
    scores = {
        "conv": torch.randint(0, 4, (6, 3, 3, 3), generator=generator).float(),
        "bias": torch.randint(0, 4, (7,), generator=generator).float() / 2,
        "zeros": torch.zeros(5, 5),
        "linear": torch.randint(0, 4, (9, 11), generator=generator).float(),
    }
    total = sum(s.numel() for s in scores.values())
    masks = top_fraction_mask(scores, fraction)
    assert sum(int(m.sum()) for m in masks.values()) == round(fraction * total)
    expected = _reference_mask(scores, fraction)
    for name in scores:
        assert masks[name].dtype == torch.bool and masks[name].shape == scores[name].shape
        assert torch.equal(masks[name], expected[name]), name


def test_mask_refuses_nan_scores_and_an_empty_mask():
    with pytest.raises(FloatingPointError, match="NaN"):
        top_fraction_mask({"w": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ConfigError, match="keeps no entry"):
        top_fraction_mask({"w": torch.ones(3)}, 0.1)


def test_mask_packs_to_bits_and_back():
    generator = torch.Generator().manual_seed(0)
    masks = {"w": torch.rand(5, 3, 3, generator=generator) > 0.5, "b": torch.tensor([True, False, True])}
    packed = pack_mask(masks)
    assert packed["w"].dtype == torch.uint8 and packed["w"].numel() == 6  # ceil(45 / 8)
    assert packed["w:shape"].tolist() == [5, 3, 3]
    again = unpack_mask(packed)
    assert all(torch.equal(again[k], masks[k]) for k in masks)


# ---------------------------------------------------------------- masked training


def test_masked_update_leaves_entries_outside_the_mask_exact():
    weight = torch.nn.Parameter(torch.randn(4, 5, generator=torch.Generator().manual_seed(0)))
    original = weight.detach().clone()
    params, masks = {"w": weight}, {"w": torch.rand(4, 5, generator=torch.Generator().manual_seed(1)) > 0.5}
    frozen = salun.frozen_entries(params, masks)
    optimizer = torch.optim.Adam([weight], lr=0.1, weight_decay=0.1)
    for _ in range(3):
        weight.grad = torch.ones_like(weight)
        salun.mask_gradients(params, masks)
        assert torch.equal(weight.grad, masks["w"].float())
        optimizer.step()
    # Adam's weight decay moved the entries with zero gradient too; the restore puts them back bit for bit.
    assert not torch.equal(weight.detach()[~masks["w"]], original[~masks["w"]])
    salun.restore_frozen_entries(params, masks, frozen)
    assert torch.equal(weight.detach()[~masks["w"]], original[~masks["w"]])
    assert (weight.detach()[masks["w"]] != original[masks["w"]]).all()


def test_every_forget_image_is_drawn_once_per_epoch():
    # The official loop took next(iter(loader)) each step: the same first batch forever.
    sampler = salun._EpochSampler(10, torch.Generator().manual_seed(0))
    draws = [sampler.draw(4) for _ in range(5)]  # 20 draws = two epochs of 10
    flat = [i for batch in draws for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:]) == list(range(10))
    assert flat[:10] != flat[10:]  # a fresh order each epoch


@pytest.mark.parametrize("train_method", ["full", "xattn"])
def test_unmasked_entries_stay_bit_identical_even_with_weight_decay(train_method, tiny_pipe):
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    selected = select_unet_parameters(tiny_pipe.unet, train_method)
    # Adam's weight decay moves every entry it sees, zero gradient or not: without the restore step this fails.
    result = _erase(
        tiny_pipe,
        train_method=train_method,
        max_train_steps=3,
        learning_rate=1e-2,
        weight_decay=0.1,
        mask_fraction=0.3,
    )
    masks = unpack_mask(result.extra_tensors["mask"])
    assert set(masks) == set(selected)
    total = sum(p.numel() for p in selected.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * total)

    after = result.components["unet"].state_dict()
    salient_changed = 0
    for name, original in before.items():
        if name not in masks:
            assert torch.equal(after[name], original), f"{name} is outside {train_method} but changed"
            continue
        mask = masks[name]
        assert torch.equal(after[name][~mask], original[~mask]), f"{name} moved outside the mask"
        salient_changed += int((after[name][mask] != original[mask]).sum())
    assert salient_changed > 0
    assert result.trained_keys["unet"] == sorted(n for n, m in masks.items() if m.any())
    assert result.metrics["trainable_parameters"] == sum(int(m.sum()) for m in masks.values())


def test_only_tensors_with_salient_entries_are_saved(tiny_pipe, tmp_path):
    selected = select_unet_parameters(tiny_pipe.unet, "full")
    masks = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in selected.items()}
    fully, partly = "conv_in.weight", "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    masks[fully][:] = True
    masks[partly].view(-1)[::3] = True
    save_file(pack_mask(masks), tmp_path / "mask.safetensors")

    result = _erase(tiny_pipe, mask_path=str(tmp_path / "mask.safetensors"), max_train_steps=2, learning_rate=1e-2)
    assert result.trained_keys["unet"] == sorted([fully, partly])
    path = result.save(tmp_path / "artifact")
    saved = load_file(path / "unet_partial.safetensors")
    assert sorted(saved) == sorted([fully, partly])
    manifest = json.loads((path / "erasure.json").read_text())
    assert manifest["components"]["unet"]["keys"] == sorted([fully, partly])
    assert "mask.safetensors" in manifest["files"]
    reloaded = unpack_mask(load_file(path / "mask.safetensors"))
    assert set(reloaded) == set(selected) and all(torch.equal(reloaded[n], masks[n]) for n in masks)
    # The partly masked tensor changed on its salient entries only.
    original = tiny_pipe.unet.state_dict()[partly]
    assert torch.equal(saved[partly][~masks[partly]], original[~masks[partly]])
    assert not torch.equal(saved[partly][masks[partly]], original[masks[partly]])


def test_a_saved_mask_is_reused_without_recomputation(tiny_pipe, tmp_path, monkeypatch):
    first = _erase(tiny_pipe, max_train_steps=1)
    path = first.save(tmp_path / "artifact")

    def no_recompute(*args, **kwargs):
        raise AssertionError("the mask was recomputed")

    monkeypatch.setattr(salun, "compute_saliency_mask", no_recompute)
    for source in (path, path / "mask.safetensors"):
        again = _erase(tiny_pipe, max_train_steps=1, mask_path=str(source))
        assert again.metrics["mask_source"] == str(source)
        assert set(again.extra_tensors["mask"]) == set(first.extra_tensors["mask"])
        for key, value in first.extra_tensors["mask"].items():
            assert torch.equal(again.extra_tensors["mask"][key], value), key

    # A full-UNet mask serves an xattn run (the official scripts do this); the reverse cannot work.
    xattn = _erase(tiny_pipe, max_train_steps=1, mask_path=str(path), train_method="xattn")
    assert all("attn2" in k for k in xattn.trained_keys["unet"])
    monkeypatch.undo()
    narrow = _erase(tiny_pipe, max_train_steps=1, train_method="xattn").save(tmp_path / "xattn")
    with pytest.raises(ConfigError, match="does not cover"):
        _erase(tiny_pipe, max_train_steps=1, mask_path=str(narrow))


def test_gradient_checkpointing_changes_memory_not_the_update(tiny_pipe):
    plain = _erase(tiny_pipe, max_train_steps=2, learning_rate=1e-3)
    checkpointed = _erase(tiny_pipe, max_train_steps=2, learning_rate=1e-3, gradient_checkpointing=True)
    assert not checkpointed.components["unet"].is_gradient_checkpointing
    for key, value in plain.components["unet"].state_dict().items():
        assert torch.allclose(checkpointed.components["unet"].state_dict()[key], value, atol=1e-6), key


def test_8bit_adam_without_bitsandbytes_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    config = erasure.make_config("salun", concept="star", use_8bit_adam=True)
    with pytest.raises(MissingDependencyError, match="pip install bitsandbytes"):
        make_optimizer([torch.nn.Parameter(torch.zeros(2))], config)


# ---------------------------------------------------------------- data


def test_generated_images_are_cached_by_prompt_seed_and_model(tiny_pipe, other_tiny_pipe, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _erase(tiny_pipe, max_train_steps=1, cache_dir=str(cache))
    assert first.metrics["generated_images"] == 4 and first.metrics["cached_images"] == 0
    assert len(list(cache.rglob("*.png"))) == 4

    calls = []
    real_generate = salun.generate
    monkeypatch.setattr(salun, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    second = _erase(tiny_pipe, max_train_steps=1, cache_dir=str(cache))
    assert calls == [] and second.metrics["cached_images"] == 4 and second.metrics["generated_images"] == 0
    # The same data, so the same run.
    assert second.loss_history == first.loss_history

    other_model = _erase(other_tiny_pipe, max_train_steps=1, cache_dir=str(cache))
    assert calls and other_model.metrics["generated_images"] == 4
    more_steps = _erase(tiny_pipe, max_train_steps=1, cache_dir=str(cache), generation_steps=3)
    assert more_steps.metrics["generated_images"] == 4
    assert len(list(cache.rglob("*.png"))) == 12


def test_images_from_a_folder_and_from_memory(tiny_pipe, tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "forget"
    folder.mkdir()
    for i in range(3):  # 40x48 files: resized and centre-cropped to the model's 32x32
        Image.fromarray(np.full((40, 48, 3), 60 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "1.png", "text": "a blue star"}) + "\n")

    def no_generation(*args, **kwargs):
        raise AssertionError("nothing should be generated")

    monkeypatch.setattr(salun, "generate", no_generation)
    data = EraseData(retain_images=torch.rand(5, 3, 32, 32), retain_prompts=["a red circle"] * 5)
    result = _erase(tiny_pipe, max_train_steps=2, forget_images_dir=str(folder), data=data)
    assert result.metrics["forget_images"] == 3 and result.metrics["retain_images"] == 5
    assert result.metrics["generated_images"] == 0

    files, captions = salun.list_image_folder(folder, "a red star")
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    assert captions == ["a red star", "a blue star", "a red star"]


def test_default_prompts_follow_the_paper_and_the_toy_world():
    nudity = default_prompts("nudity")
    assert nudity.forget == ["a photo of a nude person"]
    assert nudity.replacement == nudity.retain == ["a photo of a person wearing clothes"]

    church = default_prompts("church")
    assert church.forget == ["church"] and church.replacement == [""]
    assert church.retain and not any("church" in p for p in church.retain)

    star = default_prompts("star", "toy")
    assert star.forget[0] == "a red star" and star.replacement[0] == "a red circle"
    assert star.replacement_for("a blue star") == "a blue circle"
    assert not any("star" in p for p in star.retain) and "a green heart" in star.retain
    assert default_prompts("circle", "toy").replacement[0] == "a red square"
    assert default_prompts("red", "toy").replacement[0] == "a blue circle"
    with pytest.raises(ConfigError, match="not a toy-world"):
        default_prompts("Van Gogh", "toy")


def test_config_refuses_bad_values():
    for bad in ({"mask_fraction": 0.0}, {"mask_fraction": 1.5}, {"batch_size": 0}, {"retain_loss_weight": -1}):
        with pytest.raises(ValueError):
            erasure.make_config("salun", concept="star", **bad)
    with pytest.raises(ValueError, match="one per forget prompt"):
        erasure.make_config("salun", concept="star", forget_prompts=["a", "b"], replacement_prompts=["c", "d", "e"])
    assert erasure.make_config("salun", concept="star", cache_dir="").cache_dir is None


# ---------------------------------------------------------------- the toy world


@pytest.fixture(scope="module")
def salun_star_rates(toy_pipe, toy_judge, toy_star_base_rates, tmp_path_factory):
    """Erase "star" with the toy preset; rates on 8 seeds x 6 colours per object (48 samples)."""
    from eval.rates import erasure_rates

    cache = tmp_path_factory.mktemp("salun-cache")
    result = erasure.erase("salun", toy_pipe, concept="star", preset="toy", cache_dir=str(cache))
    erased = result.apply(toy_pipe)
    return erasure_rates(
        toy_pipe, erased, "star", toy_judge, seeds=8, num_inference_steps=25, before=toy_star_base_rates
    )


@needs_toy_sd
@pytest.mark.slow
def test_salun_erases_star_on_the_toy_world(salun_star_rates):
    rates = salun_star_rates
    before, after = rates["before"], rates["after"]
    assert before["star"] >= 0.8, f"the toy model should draw stars before erasure: {before}"
    assert rates["forget_drop"] >= 0.7, f"SalUn did not cut the star rate by 70 %: {before} -> {after}"


@needs_toy_sd
@pytest.mark.slow
def test_salun_leaves_every_other_object_within_ten_points(salun_star_rates):
    """Issue 7's bar, on 48 samples per object (one sample is 2 points)."""
    rates = salun_star_rates
    before, after = rates["before"], rates["after"]
    assert rates["max_other_shift"] <= 0.10 + 1e-9, f"another object moved too much: {before} -> {after}"
