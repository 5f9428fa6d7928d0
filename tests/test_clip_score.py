"""CLIP score: both conventions against hand-computed cosines on a tiny random CLIP, and the toy CLIP's sanity."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from eval.clip_score import ClipBackbone, clip_score, clip_scores, load_clip
from pipelines.errors import ConfigError, MissingWeightsError

PROMPTS = ["a red star", "a blue circle", "a dog on a sofa", "a bowl of soup", "a green car", "two trees"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A seeded random ``CLIPModel`` (32x32 images, 16-d projection) with the real CLIP tokenizer and a processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from pipelines.toy.models import write_clip_tokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path_factory.mktemp("clip-tokenizer")))
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, **small
        ),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            do_resize=True, size={"shortest_edge": 32}, do_center_crop=True, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=tokenizer,
    )
    return model, processor


@pytest.fixture(scope="module")
def images():
    return torch.rand(len(PROMPTS), 3, 32, 32, generator=torch.Generator().manual_seed(1))


def hand_cosines(model, processor, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Per-pair cosine from CLIPModel.forward: logits_per_image's diagonal over the logit scale."""
    pixels = list((images * 255).round().to(torch.uint8))
    inputs = processor(text=prompts, images=pixels, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    return out.logits_per_image.diag() / model.logit_scale.exp()


def negated_text(model):
    """The same model with the text projection negated: every cosine flips sign."""
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        flipped.text_projection.weight.neg_()
    return flipped


def test_both_conventions_match_hand_computed_cosines(tiny_clip, images):
    model, processor = tiny_clip
    backbone = ClipBackbone.from_transformers(model, processor, "tiny-random")
    scores = clip_scores(images, PROMPTS, backbone=backbone)
    cosine = hand_cosines(model, processor, images, PROMPTS).mean().item()
    assert scores["advunlearn"].value == pytest.approx(cosine, abs=1e-5)
    assert scores["torchmetrics"].value == pytest.approx(max(100 * cosine, 0.0), abs=1e-3)
    for convention, result in scores.items():
        assert result.convention == convention
        assert result.backbone == "tiny-random"
        assert result.num_samples == len(PROMPTS)
    assert "max(100" in scores["torchmetrics"].definition and "cosine" in scores["advunlearn"].definition


def test_torchmetrics_convention_clips_the_mean_at_zero(tiny_clip, images):
    model, processor = tiny_clip
    results = []
    for variant in (model, negated_text(model)):
        backbone = ClipBackbone.from_transformers(variant, processor, "variant")
        results.append(clip_scores(images, PROMPTS, backbone=backbone))
    first, second = (r["advunlearn"].value for r in results)
    assert first == pytest.approx(-second, abs=1e-5) and abs(first) > 1e-4
    negative, positive = sorted(results, key=lambda r: r["advunlearn"].value)
    assert negative["advunlearn"].value < 0
    assert negative["torchmetrics"].value == 0.0
    assert positive["torchmetrics"].value == pytest.approx(100 * positive["advunlearn"].value, abs=1e-3)


def test_float_uint8_and_pil_images_give_the_same_score(tiny_clip, images):
    from pipelines.images import to_pil

    backbone = ClipBackbone.from_transformers(*tiny_clip, "tiny-random")
    as_float = clip_score(images, PROMPTS, backbone=backbone, convention="advunlearn").value
    as_uint8 = clip_score((images * 255).round().to(torch.uint8), PROMPTS, backbone=backbone, convention="advunlearn")
    as_pil = clip_score(to_pil(images), PROMPTS, backbone=backbone, convention="advunlearn")
    assert as_uint8.value == pytest.approx(as_float, abs=1e-6)
    assert as_pil.value == pytest.approx(as_float, abs=1e-6)


def test_batching_does_not_change_the_score(tiny_clip, images):
    backbone = ClipBackbone.from_transformers(*tiny_clip, "tiny-random")
    whole = clip_scores(images, PROMPTS, backbone=backbone, batch_size=64)
    pieces = clip_scores(images, PROMPTS, backbone=backbone, batch_size=4)
    for convention in whole:
        assert pieces[convention].value == pytest.approx(whole[convention].value, abs=1e-5)


def test_bad_input_and_missing_weights_raise_clear_errors(tiny_clip, images, tmp_path):
    backbone = ClipBackbone.from_transformers(*tiny_clip, "tiny-random")
    with pytest.raises(ConfigError, match="one prompt per image"):
        clip_score(images, PROMPTS[:2], backbone=backbone)
    with pytest.raises(ConfigError, match="convention"):
        clip_score(images, PROMPTS, backbone=backbone, convention="clipscore")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        clip_score(images * 2 - 1, PROMPTS, backbone=backbone)
    with pytest.raises(MissingWeightsError, match="huggingface-cli download"):
        load_clip("erasure-studio-tests/no-such-clip")
    with pytest.raises(MissingWeightsError, match="open_clip"):
        load_clip(f"open_clip:ViT-B-32:{tmp_path / 'missing.safetensors'}")
    with pytest.raises(ConfigError, match="no architecture"):
        load_clip("open_clip:No-Such-Arch:openai")


def test_local_transformers_clip_folder_loads_offline(tiny_clip, images, tmp_path):
    model, processor = tiny_clip
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    loaded = load_clip(str(tmp_path / "clip"))
    direct = clip_score(images, PROMPTS, backbone=ClipBackbone.from_transformers(model, processor, "direct"))
    from_disk = clip_score(images, PROMPTS, backbone=loaded)
    assert from_disk.value == pytest.approx(direct.value, abs=1e-4)
    assert from_disk.backbone == str((tmp_path / "clip").resolve())
    # the temperature the backbone learned, for zero-shot reads (Text-to-Unlearn's keep term)
    assert loaded.logit_scale == pytest.approx(float(model.logit_scale.exp()), rel=1e-5)


@pytest.mark.slow
def test_clip_score_toy_matching_beats_shuffled():
    from pipelines.toy.world import make_dataset, prompt_for

    arrays, scenes = make_dataset(96, seed=7, split="all")
    renders = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255
    matching = [prompt_for(s.object, s.colour) for s in scenes]
    # Shift captions to another scene that differs in object or colour, so no shuffled caption still fits.
    shuffled = []
    for i, scene in enumerate(scenes):
        j = next(
            (i + k) % len(scenes)
            for k in range(1, len(scenes))
            if (scenes[(i + k) % len(scenes)].object, scenes[(i + k) % len(scenes)].colour)
            != (scene.object, scene.colour)
        )
        shuffled.append(matching[j])
    good = clip_scores(renders, matching, backbone="toy")
    bad = clip_scores(renders, shuffled, backbone="toy")
    assert good["advunlearn"].value > bad["advunlearn"].value + 0.05
    assert good["torchmetrics"].value > bad["torchmetrics"].value
    assert good["advunlearn"].backbone.startswith("toy")
    assert np.isfinite(good["advunlearn"].value)
