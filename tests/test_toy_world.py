"""The toy world (issue 4): renderer and captions, the shipped weights and their checksums, looser versions of the
quality bars that ``benchmarks/toy_quality.py`` measures at full size, and a miniature ``toy build`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_toy_sd

from pipelines.toy.world import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    OBJECTS,
    STYLES,
    WORDS,
    Scene,
    canonical,
    caption,
    make_dataset,
    render,
)

# ---------------------------------------------------------------- the world


def test_renders_are_deterministic_by_seed():
    a, scenes_a = make_dataset(32, seed=3, split="all")
    b, scenes_b = make_dataset(32, seed=3, split="all")
    c, _ = make_dataset(32, seed=4, split="all")
    assert a.shape == (32, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and scenes_a == scenes_b
    assert not np.array_equal(a, c)


def test_the_world_has_enough_objects_colours_styles_and_backgrounds():
    assert len(OBJECTS) >= 8 and len(COLOURS) >= 6 and len(STYLES) >= 3 and len(BACKGROUNDS) >= 2
    _, scenes = make_dataset(600, seed=0, split="all")
    for attribute, values in (("object", OBJECTS), ("colour", COLOURS), ("style", STYLES)):
        assert {getattr(s, attribute) for s in scenes} == set(values)


def test_one_scene_is_jittered_in_position_size_and_rotation():
    scene = Scene("star", "red", "solid", "black")
    renders = [np.asarray(render(scene, np.random.default_rng(seed))) for seed in range(4)]
    assert all(not np.array_equal(renders[0], other) for other in renders[1:])


def test_held_out_pairs_are_never_rendered_for_training():
    _, train = make_dataset(1500, seed=0, split="train")
    assert not {(s.object, s.colour) for s in train} & set(HELD_OUT)
    _, held = make_dataset(60, seed=0, split="heldout")
    assert {(s.object, s.colour) for s in held} == set(HELD_OUT)


def test_captions_name_every_object_and_style_in_at_least_two_words():
    for value in (*OBJECTS, *STYLES):
        assert len(WORDS[value]) >= 2, value
        assert all(canonical(word) == value for word in WORDS[value])
    rng = np.random.default_rng(0)
    scene = Scene("heart", "blue", "striped", "grey")
    captions = {caption(scene, rng) for _ in range(200)}
    assert len(captions) >= 10  # several templates and synonyms
    assert all(any(word in c for word in WORDS["heart"]) for c in captions)


# ---------------------------------------------------------------- the shipped weights


def test_shipped_weights_match_their_checksums_and_fit_52_mib():
    from pipelines.sd import TOY_DIR
    from pipelines.toy.build import verify_checksums

    assert verify_checksums(TOY_DIR) == []
    # 40 MiB until the one-step generator (a second fp16 toy UNet, 12 MB) joined the world for SFD; 52 MiB until the
    # latent GAN (10.5 MB with its own copy of the VAE, 1.9 MB) replaced the 3.3 MB pixel GAN (issue 19).
    assert sum(p.stat().st_size for p in TOY_DIR.rglob("*") if p.is_file()) <= 60 * 2**20


def test_checksums_catch_a_changed_file(tmp_path):
    from pipelines.toy.build import verify_checksums, write_checksums

    (tmp_path / "a.safetensors").write_bytes(b"weights")
    write_checksums(tmp_path)
    assert verify_checksums(tmp_path) == []
    (tmp_path / "a.safetensors").write_bytes(b"weightz")
    (tmp_path / "b.json").write_text("{}")
    assert verify_checksums(tmp_path) == ["a.safetensors: changed", "b.json: not listed"]


@needs_toy_sd
def test_toy_sd_loads_with_stock_diffusers_and_no_code_of_ours():
    from diffusers import StableDiffusionPipeline

    from pipelines.sd import toy_path

    pipe = StableDiffusionPipeline.from_pretrained(toy_path("sd"), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red star", num_inference_steps=2, output_type="np").images[0]
    assert image.shape == (32, 32, 3)
    assert pipe.tokenizer.vocab_size == 49408  # the real CLIP vocabulary


# ---------------------------------------------------------------- quality, looser than the benchmark's bars


@needs_toy_sd
def test_judge_reads_fresh_renders(toy_judge):
    """Bar: >= 99 % per head on 3000 renders (toy_quality.json: 100 / 100 / 99.97 / 100 %); here 98 % on 500."""
    from pipelines.toy.quality import judge_accuracy

    accuracy = judge_accuracy(toy_judge, num_images=500, seed=11)
    assert min(accuracy.values()) >= 0.98, accuracy


@needs_toy_sd
def test_toy_sd_draws_the_named_object_and_colour(toy_pipe, toy_judge):
    """Bars: >= 90 % object and colour (every pair, 4 seeds, 50 steps), synonyms >= 80 %, held-out pairs >= 75 %;
    here one seed per pair at 25 steps, with 5 to 15 points of slack (toy_quality.json measures 100 % on each)."""
    from pipelines.toy.quality import sample_accuracy

    trained = [(o, c) for o in OBJECTS for c in COLOURS if (o, c) not in HELD_OUT]
    named = sample_accuracy(toy_pipe, toy_judge, trained, seeds=1, num_inference_steps=25)
    assert named["object"] >= 0.85 and named["colour"] >= 0.85, named
    synonym = sample_accuracy(toy_pipe, toy_judge, trained[::3], seeds=1, synonym=True, num_inference_steps=25)
    assert synonym["object"] >= 0.7, synonym
    held_out = sample_accuracy(toy_pipe, toy_judge, list(HELD_OUT), seeds=2, num_inference_steps=25)
    assert held_out["object"] >= 0.6 and held_out["colour"] >= 0.6, held_out


@needs_toy_sd
def test_toy_clip_zero_shot_on_fresh_renders():
    """Bar: >= 95 % on objects and colours of 1000 renders; here 90 % on 300."""
    from pipelines.toy.quality import clip_zero_shot

    accuracy = clip_zero_shot(num_images=300, seed=5)
    assert accuracy["object"] >= 0.9 and accuracy["colour"] >= 0.9, accuracy


# ---------------------------------------------------------------- the build and the grid

TINY_BUILD = {
    "judge": {"steps": 2, "num_images": 64, "batch_size": 16},
    "judge_heldout": {"steps": 2, "num_images": 64, "batch_size": 16},
    "vae": {"steps": 2, "num_images": 64, "batch_size": 8},
    "sd": {"steps": 2, "phase_steps": 2, "num_images": 64, "batch_size": 8},
    "onestep": {"num_pairs": 8, "pair_steps": 2, "regression_steps": 2, "regression_batch": 4, "sid_steps": 2},
    "clip": {"steps": 2, "num_images": 64, "batch_size": 16},
    "gan": {"steps": 2, "batch_size": 8, "eval_samples": 16, "probe_every": 1, "probe_samples": 8},
}


@pytest.mark.slow
def test_toy_build_runs_every_stage_and_writes_loadable_folders(tmp_path):
    """Two steps per stage: the shipped recipe's code path end to end, into the layouts that load without us."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPProcessor

    import gan
    from eval.judges import ToyJudge
    from pipelines.toy.build import build, verify_checksums
    from pipelines.toy.judge import HeldOutToyJudge

    report = build(tmp_path, stages=tuple(TINY_BUILD), stage_kwargs=TINY_BUILD)
    assert set(report) == set(TINY_BUILD) and all(r["seconds"] > 0 for r in report.values())
    assert verify_checksums(tmp_path) == []

    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "sd", safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red star", num_inference_steps=2, output_type="pt").images.shape == (1, 3, 32, 32)
    from pipelines.one_step import load_one_step

    one_step = load_one_step(tmp_path / "onestep", teacher=pipe)
    assert one_step(["a red star"], output_type="pt").images.shape == (1, 3, 32, 32)
    assert [p["stage"] for p in report["onestep"]["probes"]] == ["init", "regression", "sid"]
    CLIPModel.from_pretrained(tmp_path / "clip")
    assert CLIPProcessor.from_pretrained(tmp_path / "clip").tokenizer.vocab_size == 49408
    judge = ToyJudge(tmp_path / "judge")
    assert len(judge.classify(torch.rand(2, 3, 32, 32))) == 2
    heldout = HeldOutToyJudge(tmp_path / "judge_heldout")  # another architecture, read from its config.json
    assert type(heldout.net) is not type(judge.net) and len(heldout.classify(torch.rand(2, 3, 32, 32))) == 2
    toy_gan = gan.load(tmp_path / "gan")  # a latent generator, decoded by the VAE the bundle carries
    assert toy_gan.is_latent and toy_gan.sample(2).shape == (2, 3, 32, 32)
    assert report["gan"]["quality"]["num_samples"] == report["gan"]["quality_heldout"]["num_samples"] == 16
    assert [p["step"] for p in report["gan"]["probes"]] == [1, 2]
    assert 0 <= report["gan"]["probes"][0]["heldout"]["confident_fraction"] <= 1
    assert not (tmp_path / ".gan.build").exists()  # the probes' scratch folder is gone with the build


def test_toy_build_names_an_unknown_stage(tmp_path):
    from pipelines.toy.build import build

    with pytest.raises(ValueError, match="unknown toy build stage 'unet'"):
        build(tmp_path, stages=("unet",))


@needs_toy_sd
def test_toy_grid_command_writes_a_prompts_by_seeds_png(tmp_path, capsys):
    from PIL import Image

    from ui.cli import main

    out = tmp_path / "grid.png"
    assert main(["toy", "grid", "--seeds", "2", "--output", str(out)]) == 0
    grid = Image.open(out)
    assert grid.height > grid.width  # 8 prompt rows, 2 seed columns
    assert "wrote" in capsys.readouterr().out


def test_gan_recipe_levers_run_and_the_partition_assigns_every_scene(tmp_path):
    """The issue-19 pixel levers (conditional projection discriminator, DiffAugment) run end to end for two steps,
    and z's latent partition reads object, colour and background off fixed coordinates."""
    from pipelines.errors import ConfigError
    from pipelines.toy.build_gan import LabelProjection, partition_labels, train_pixel_gan
    from pipelines.toy.world import BACKGROUNDS, COLOURS, OBJECTS

    z = torch.zeros(3, 128)
    z[0, 3], z[0, 8 + 5], z[0, 14 + 2] = 1, 1, 1  # OBJECTS[3], COLOURS[5], BACKGROUNDS[2]
    z[1, 0], z[1, 8], z[1, 14] = 1, 1, 1
    labels = partition_labels(z[:2], list(OBJECTS))
    assert labels.tolist() == [[3, 5, 2], [0, 0, 0]]
    without_circle = partition_labels(z[1:2], [o for o in OBJECTS if o != "circle"])
    assert OBJECTS[int(without_circle[0, 0])] == "square"  # the first coordinate is the first object left
    assert LabelProjection(16)(torch.randn(2, 16), labels).shape == (2, 1)
    assert len(OBJECTS) + len(COLOURS) + len(BACKGROUNDS) <= 128
    with pytest.raises(ConfigError, match="mixing=0"):
        train_pixel_gan(tmp_path, steps=1, num_images=8, conditional=True, mixing=0.9)
    with pytest.raises(ConfigError, match="imle_match"):
        train_pixel_gan(tmp_path, steps=1, num_images=8, imle_weight=1.0, imle_match="edges")
    report = train_pixel_gan(
        tmp_path,
        steps=2,
        num_images=32,
        batch_size=4,
        mixing=0,
        conditional=True,
        diffaugment="translation,cutout",
        imle_weight=1.0,
        imle_pool=2,
        adversarial_weight=0.5,
        eval_samples=0,
        probe_every=0,
    )
    assert report["steps"] == 2 and (tmp_path / "gan" / "generator.safetensors").is_file()


# ---------------------------------------------------------------- the toy StyleGAN2 (issue 19)


def test_shipped_toy_gan_draws_every_object_sharply_by_the_heldout_judge():
    """Issue 19's bar (``benchmarks/results/toy_quality.json``: every object >= 8 %, confident >= 85 %, every colour
    >= 10 % on 2000 samples) loosened for 400 samples of another seed: at 400 samples the standard error of a rate
    near 8 % is 1.4 points, near 10 % 1.5 and near 85 % 1.8, so the bounds below sit two to three standard errors under
    the full bar's thresholds. The old pixel GAN (rarest object 0 %, confident 40 % by this judge) fails every one."""
    import gan
    from eval.judges import load_judge
    from pipelines.toy.build_gan import gan_quality

    quality = gan_quality(gan.load("toy"), load_judge("toy-heldout"), num_samples=400, seed=3)
    assert quality["min_object_frequency"] >= 0.05, quality["object_frequency"]
    assert quality["confident_fraction"] >= 0.80, quality
    assert quality["min_colour_frequency"] >= 0.07, quality["colour_frequency"]


def test_gan_without_an_object_narrows_the_partition_and_never_asks_for_it(tmp_path):
    """The Ret-FD reference: the same recipe, with the latent partition's object block narrowed to the other 7."""
    import gan
    from pipelines.errors import ConfigError
    from pipelines.toy.build_gan import partition_labels, train_gan
    from pipelines.toy.world import OBJECTS

    with pytest.raises(ConfigError, match="'dragon' is not a toy object; choose one of circle"):
        train_gan(tmp_path, steps=1, exclude_object="dragon")
    report = train_gan(tmp_path, steps=1, batch_size=4, exclude_object="Circle", eval_samples=0, probe_every=0)
    bundle = gan.load(tmp_path / "gan_without_circle")
    assert report["exclude_object"] == "circle" and bundle.is_latent
    assert bundle.generator.one_hot_blocks[0] == (0, 7)
    assert bundle.metadata["recipe"]["distill_weight"] == 10.0  # the shipped recipe, recorded
    seven = [o for o in OBJECTS if o != "circle"]
    assert OBJECTS.index("circle") not in partition_labels(torch.randn(512, 256), seven)[:, 0].tolist()
    assert not (tmp_path / ".gan_without_circle.build").exists()
