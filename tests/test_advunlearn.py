"""AdvUnlearn: only the text encoder trains (by exact layer index), the attack path runs, retain prompts are valid,
and on the toy world the erased encoder swaps into a fresh pipeline and still erases."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_toy_sd

import erasure
from erasure.advunlearn import retain_prompts, select_text_encoder_parameters


def _twelve_layer_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=100,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=12,
            num_attention_heads=2,
            max_position_embeddings=16,
        )
    )


def test_layer_selection_is_by_index_not_prefix():
    encoder = _twelve_layer_encoder()
    names = select_text_encoder_parameters(encoder, "layers", [0, 1], final_layer_norm=False)
    layers = {int(n.split("layers.")[1].split(".")[0]) for n in names}
    assert layers == {0, 1}  # the official startswith('encoder.layers.1') also took 10 and 11


def test_presets_select_the_right_tensors():
    encoder = _twelve_layer_encoder()
    full = select_text_encoder_parameters(encoder, "full")
    assert any("final_layer_norm" in n for n in full)
    assert not any("embeddings" in n for n in full)
    attn = select_text_encoder_parameters(encoder, "self_attn", final_layer_norm=False)
    assert attn and all("self_attn" in n for n in attn)
    mlp = select_text_encoder_parameters(encoder, "mlp", final_layer_norm=False)
    assert mlp and all(".mlp." in n for n in mlp)


def test_layers_preset_needs_layers():
    with pytest.raises(ValueError, match="needs layers"):
        erasure.make_config("advunlearn", concept="star", train_method="layers")


def test_retain_sets():
    objects = retain_prompts("objects", "nudity")
    assert len(objects) == 243 and all(p.startswith("a photo of a ") for p in objects)
    assert not any(w in p for p in objects for w in ("bikini", "brassiere", "swimming trunks"))
    toy = retain_prompts("toy", "star")
    assert toy and not any("star" in p for p in toy)


@pytest.mark.parametrize("attack_method, schedule", [("pgd", "faithful"), ("fast_at", "fast")])
def test_attack_path_trains_only_the_text_encoder(tiny_pipe, attack_method, schedule):
    unet_before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    result = erasure.erase(
        "advunlearn",
        tiny_pipe,
        concept="star",
        max_train_steps=3,
        warmup_steps=1,
        attack_steps=2,
        learning_rate=1e-3,
        retain_set="toy",
        retain_batch_size=2,
        num_inference_steps=4,
        attack_method=attack_method,
        schedule=schedule,
    )
    assert set(result.components) == {"text_encoder"}
    assert all("attack_loss" in h for h in result.loss_history[1:])
    assert "attack_loss" not in result.loss_history[0]  # warm-up iteration
    for k, v in tiny_pipe.unet.state_dict().items():
        assert torch.equal(v, unet_before[k])
    trained = result.components["text_encoder"].state_dict()
    base = tiny_pipe.text_encoder.state_dict()
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed and changed <= set(result.trained_keys["text_encoder"])
    assert not any("embeddings" in k for k in changed)


def test_iter_retain_mode(tiny_pipe):
    result = erasure.erase(
        "advunlearn",
        tiny_pipe,
        concept="star",
        max_train_steps=2,
        warmup_steps=5,
        retain_train="iter",
        retain_set="toy",
        retain_batch_size=2,
        num_inference_steps=4,
    )
    assert all("loss_retain" in h for h in result.loss_history)


@pytest.fixture(scope="module")
def advunlearn_star_rates(toy_pipe, toy_judge, toy_star_base_rates, tmp_path_factory):
    """Erase "star" with the toy preset, save, and swap the encoder into a freshly loaded toy pipeline."""
    from eval.rates import erasure_rates
    from pipelines import apply_artifact, load_sd

    result = erasure.erase("advunlearn", toy_pipe, concept="star", preset="toy")
    path = result.save(tmp_path_factory.mktemp("advunlearn") / "advunlearn-star")
    fresh = load_sd("toy")  # a freshly loaded pipeline of the same family
    erased = apply_artifact(fresh, path)
    assert erased.unet is fresh.unet  # the UNet is untouched: only the encoder swaps in
    # `fresh` holds the same weights as `toy_pipe`, so the shared base rates are its rates.
    return erasure_rates(fresh, erased, "star", toy_judge, seeds=8, num_inference_steps=25, before=toy_star_base_rates)


@needs_toy_sd
@pytest.mark.slow
def test_advunlearn_erases_star_and_swaps_into_a_fresh_pipeline(advunlearn_star_rates):
    rates = advunlearn_star_rates
    before, after = rates["before"], rates["after"]
    assert after["star"] <= 0.3 * before["star"], f"star rate did not fall by 70%: {before} -> {after}"


@needs_toy_sd
@pytest.mark.slow
def test_advunlearn_leaves_every_other_object_within_ten_points(advunlearn_star_rates):
    """Issue 6's bar, on 48 samples per object (one sample is 2 points)."""
    rates = advunlearn_star_rates
    before, after = rates["before"], rates["after"]
    assert rates["max_other_shift"] <= 0.10 + 1e-9, f"another object moved too much: {before} -> {after}"
