"""Text-to-Unlearn: the contract (config, registry, artifact, bad input), γ, and a real erasure on the toy GAN.

The erasure is measured by the held-out toy judge (``toy-heldout``): the method's perceptual term can hold the toy
judge's features, so that judge's verdicts on the result would not be independent.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import gan
from erasure import erase, get_config_class, list_methods
from gan.metrics import degree_of_unlearning
from pipelines.errors import ConfigError, StudioError

NUM_SAMPLES = 500


@pytest.fixture(scope="module")
def toy_gan():
    return gan.load("toy")


@pytest.fixture(scope="module")
def circle_erased(toy_gan):
    """One toy-preset erasure of "circle" by text alone, shared by the tests of this module."""
    return erase("text_to_unlearn", toy_gan, concept="circle", preset="toy", seed=0)


@pytest.fixture(scope="module")
def heldout():
    from eval.judges import load_judge

    return load_judge("toy-heldout")


# ---------------------------------------------------------------- contract


def test_registered_with_a_toy_preset_and_json_round_trip():
    assert "text_to_unlearn" in list_methods()
    config_class = get_config_class("text_to_unlearn")
    config = config_class(concept="star", **config_class.preset_values("toy"))
    again = config_class.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert config.text_prompts == ["star"]
    mapper, tune = config.stage_steps()
    assert mapper >= 1 and tune >= 1 and mapper + tune == config.max_train_steps
    baseline = config_class(concept="star", objective="clip_distance")
    assert baseline.stage_steps() == (0, baseline.max_train_steps)
    several = config_class(concept="star", prompts=["a star", "a heart"], max_train_steps=10)
    mapper, tune = several.stage_steps()
    assert 2 * mapper + tune == 10


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"prompts": ["  "]}, "a prompt is empty"),
        ({"clip": " "}, "clip is empty"),
        ({"perceptual": "ssim"}, "perceptual='ssim' is not one of"),
        ({"mapper_fraction": 1.0}, "mapper_fraction must be between 0 and 1"),
        ({"localise_quantile": 1.0}, r"localise_quantile must be in \[0, 1\)"),
        ({"train_part": "decoder"}, "not allowed"),
        ({"max_train_steps": 1}, "too few"),
        ({"direction_norm_floor": 0.0}, "direction_norm_floor must be positive"),
        ({"lr_warmup_steps": -1}, "lr_warmup_steps must be 0 or positive"),
        ({"keep_prompts": ["a red shape", " "]}, "a keep prompt is empty"),
        ({"keep_prompts": ["a red shape"]}, "at least two prompts"),
        ({"keep_lambda": -1.0}, "keep_lambda must not be negative"),
        ({"keep_share_lambda": -1.0}, "keep_share_lambda must not be negative"),
    ],
)
def test_bad_configs_are_refused_with_the_fix(options, expected):
    with pytest.raises(ConfigError, match=expected):
        get_config_class("text_to_unlearn")(concept="star", **options)


def test_a_clip_folder_that_does_not_exist_is_one_error(toy_gan, tmp_path):
    with pytest.raises(StudioError, match="does not exist"):
        erase("text_to_unlearn", toy_gan, concept="star", clip=str(tmp_path / "no-clip"), max_train_steps=2)


def test_a_prompt_the_tokenizer_truncates_warns(toy_gan):
    long_prompt = "a star " + "with many points " * 20
    with pytest.warns(UserWarning, match="cut at the end"):
        erase(
            "text_to_unlearn", toy_gan, concept="star", prompts=[long_prompt], preset="toy",
            max_train_steps=2, batch_size=2, direction_samples=2, eval_samples=0,
        )  # fmt: skip


def test_a_diffusion_pipeline_is_refused(tiny_pipe):
    with pytest.raises(ConfigError, match="GANBundle"):
        erase("text_to_unlearn", tiny_pipe, concept="star", max_train_steps=2)


def test_only_the_chosen_part_trains_and_the_base_is_untouched(toy_gan):
    before = {n: p.clone() for n, p in toy_gan.generator.named_parameters()}
    result = erase(
        "text_to_unlearn", toy_gan, concept="circle", preset="toy", train_part="synthesis", max_train_steps=4,
        batch_size=2, direction_samples=4, eval_samples=0,
    )  # fmt: skip
    keys = result.trained_keys["generator"]
    assert keys and not any(k.startswith("style.") for k in keys)
    erased = dict(result.components["generator"].named_parameters())
    assert all(torch.equal(erased[n], before[n]) for n in before if n.startswith("style."))
    assert any(not torch.equal(erased[n], before[n]) for n in keys)
    assert all(torch.equal(p, before[n]) for n, p in toy_gan.generator.named_parameters())
    assert [h["stage"] for h in result.loss_history] == [1.0, 1.0, 2.0, 2.0]


def test_a_seed_gives_the_same_generator_whatever_ran_before(toy_gan):
    """The perceptual network (the toy judge) is cached per process; building it once drew from the seeded generator,
    so the same seed gave a different erasure in a fresh process than after another run (62 % against 55 %)."""
    from pipelines.toy.judge import installed_toy_judge

    options = dict(concept="circle", preset="toy", seed=0, max_train_steps=4, batch_size=2, direction_samples=4)
    installed_toy_judge.cache_clear()
    fresh = erase("text_to_unlearn", toy_gan, eval_samples=0, **options).components["generator"]
    cached = erase("text_to_unlearn", toy_gan, eval_samples=0, **options).components["generator"]
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), cached.parameters()))


def test_a_latent_gan_and_an_identity_network():
    """The latent route (the VAE decodes what CLIP sees) and the identity term, on tiny random models."""
    import torch.nn.functional as F
    from doubles import tiny_latent_bundle

    from erasure import EraseData

    data = EraseData(identity_network=lambda images: F.avg_pool2d(images, 4).flatten(1))
    result = erase(
        "text_to_unlearn", tiny_latent_bundle(), concept="circle", perceptual="none", max_train_steps=4,
        batch_size=2, direction_samples=4, eval_samples=0, train_part="all", learning_rate=0.05, data=data,
    )  # fmt: skip
    assert result.metrics["identity"] == "given"
    # The mapper's edits and the fine-tuned generator's second step move the identity embedding (G_t = G_f at first).
    assert all(h["loss_id"] > 0 for h in result.loss_history if h["stage"] == 1.0)
    assert result.loss_history[-1]["stage"] == 2.0 and result.loss_history[-1]["loss_id"] > 1e-6


@pytest.mark.parametrize("localise", ["alignment", "edit"])
def test_localised_losses_weight_samples_in_zero_to_one(localise, monkeypatch):
    """Both ``localise`` readings give each sample a weight in [0, 1] and the run trains (tiny random GAN)."""
    from doubles import tiny_bundle

    from gan import text_to_unlearn

    seen = []
    original = text_to_unlearn.directional_loss

    def spy(delta, direction, weights=None, *args):
        seen.append(weights)
        return original(delta, direction, weights, *args)

    monkeypatch.setattr(text_to_unlearn, "directional_loss", spy)
    result = erase(
        "text_to_unlearn", tiny_bundle(0), concept="circle", perceptual="none", localise=localise,
        max_train_steps=6, batch_size=4, direction_samples=8, eval_samples=0, learning_rate=0.01, train_part="all",
    )  # fmt: skip
    assert len(seen) == 3 and all(w is not None and w.shape == (4,) for w in seen)
    assert all(bool(((w >= 0) & (w <= 1)).all()) for w in seen)
    assert len([h for h in result.loss_history if h["stage"] == 2.0]) == 3


def test_the_directional_loss_has_a_bounded_gradient_where_nothing_changed_yet():
    """At the first step ΔI = 0: with the default floor the gradient is d / 1e-8 (the spike that makes the first Adam
    step the whole erasure); with ``norm_floor`` it is d / floor."""
    from gan.text_to_unlearn import directional_loss

    direction = torch.nn.functional.normalize(torch.randn(8), dim=0)
    for floor, scale in ((1e-8, 1e8), (0.1, 10.0)):
        delta = torch.zeros(1, 8, requires_grad=True)
        directional_loss(delta, direction, norm_floor=floor).backward()
        assert torch.allclose(delta.grad[0], -direction * scale, rtol=1e-4)


def test_a_warm_up_makes_the_first_step_leave_the_generator_alone():
    """``lr_warmup_steps``: the rate starts at 0, so one fine-tuning step changes nothing; without it, one does."""
    from doubles import tiny_bundle

    def one_step(**options):
        bundle = tiny_bundle(0)
        result = erase(
            "text_to_unlearn", bundle, concept="circle", objective="clip_distance", max_train_steps=1, batch_size=2,
            eval_samples=0, train_part="all", **options,
        )  # fmt: skip
        after = result.components["generator"].state_dict()
        return max((after[k] - v).abs().max().item() for k, v in bundle.generator.state_dict().items())

    assert one_step(lr_warmup_steps=5) == 0.0
    assert one_step() > 0.0


def test_the_keep_term_is_zero_until_clips_reading_moves():
    """``keep_prompts``: KL of CLIP's zero-shot reading among them, 0 for an unchanged sample, positive for one that
    moved from one kept value towards another, and its gradient reaches the tuned embedding."""
    from gan.text_to_unlearn import zero_shot_shifts

    keep_text = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    reference = torch.nn.functional.normalize(keep_text[0] + 0.1 * torch.randn(2, 16), dim=-1)
    assert torch.allclose(zero_shot_shifts(reference, reference, keep_text, 20.0)[0], torch.zeros(2), atol=1e-6)
    moved = torch.nn.functional.normalize(reference + keep_text[1], dim=-1).requires_grad_(True)
    shift, _ = zero_shot_shifts(moved, reference, keep_text, 20.0)
    assert bool((shift > 0.1).all())
    shift.sum().backward()
    assert moved.grad is not None and moved.grad.abs().sum() > 0


def test_the_keep_share_term_reads_the_batch_not_the_sample():
    """The batch part holds how many samples CLIP reads as each kept value: two samples that swap their readings
    leave it at 0 (each sample's own term is not), two that both move to one value do not."""
    from gan.text_to_unlearn import zero_shot_shifts

    keep_text = torch.eye(3, 8)
    reference = torch.nn.functional.normalize(keep_text[:2] + 0.05, dim=-1)
    swapped = reference.flip(0)
    per_sample, share = zero_shot_shifts(swapped, reference, keep_text, 20.0)
    assert share == pytest.approx(0.0, abs=1e-6)
    assert bool((per_sample > 1).all())
    piled = reference[:1].expand(2, -1)
    assert zero_shot_shifts(piled, reference, keep_text, 20.0)[1] > 0.1


def test_the_keep_share_term_spreads_the_concepts_samples_as_the_others_are():
    """With the concept's prompts, the batch part's target is the frozen share without the concept: a concept sample
    turning into its second reading (the one value it already counted towards among the keep prompts alone) costs
    nothing without them, and with them costs more than its turning into what the rest of the batch is."""
    from gan.text_to_unlearn import zero_shot_shifts

    keep_text, concept_text = torch.eye(3, 8)[:2], torch.eye(3, 8)[2:]
    other = keep_text[0]  # a sample that is the first kept value
    concept = torch.nn.functional.normalize(concept_text[0] + 0.3 * keep_text[1], dim=-1)  # second reading: value 1
    reference = torch.stack([other, concept])
    to_second = torch.stack([other, keep_text[1]])
    to_first = torch.stack([other, keep_text[0]])
    assert zero_shot_shifts(to_second, reference, keep_text, 20.0)[1] == pytest.approx(0.0, abs=1e-3)
    piled = zero_shot_shifts(to_second, reference, keep_text, 20.0, concept_text=concept_text)[1]
    spread = zero_shot_shifts(to_first, reference, keep_text, 20.0, concept_text=concept_text)[1]
    assert piled > 0.1 and spread < piled / 5
    unchanged = zero_shot_shifts(reference, reference, keep_text, 20.0, concept_text=concept_text)[1]
    assert unchanged > spread  # the concept's own reading is what the target leaves out


def test_keep_prompts_that_name_the_concept_are_left_out():
    from gan.text_to_unlearn import prompts_not_naming

    keep = ["a circle", "a red circle", "a square", "a circular star", "an orange shape"]
    assert prompts_not_naming(keep, "circle") == ["a square", "a circular star", "an orange shape"]
    assert prompts_not_naming(keep, "red circle") == ["a circle", "a square", "a circular star", "an orange shape"]


def test_keep_prompts_add_a_logged_term(toy_gan):
    result = erase(
        "text_to_unlearn", toy_gan, concept="circle", keep_prompts=["a circle", "a square", "a star"],
        max_train_steps=4, batch_size=2, direction_samples=4, eval_samples=0, train_part="all", learning_rate=0.01,
    )  # fmt: skip
    assert result.metrics["keep_prompts"] == ["a square", "a star"]
    tuning = [h for h in result.loss_history if h["stage"] == 2.0]
    assert tuning and all(math.isfinite(h["loss_keep"]) and math.isfinite(h["loss_keep_share"]) for h in tuning)
    assert tuning[0]["loss_keep"] == pytest.approx(0.0, abs=1e-6)  # G_t = G_f at the first step


def test_the_keep_terms_sample_part_holds_only_what_is_not_the_concept(toy_gan, monkeypatch):
    """With ``localise`` on, a sample that fully shows the concept (weight 1) is free to change: its reading is not
    held (holding it pulled every erased sample to CLIP's second reading); one without the concept (weight 0) is."""
    from gan import text_to_unlearn

    # In every batch of two, the first sample is the concept and the second is not.
    monkeypatch.setattr(
        text_to_unlearn.TextToUnlearn,
        "_concept_weights",
        lambda self, bundle, frozen, clip, z, *rest: torch.tensor([1.0, 0.0]),
    )
    per_sample_parts = []
    original = text_to_unlearn.zero_shot_shifts

    def spy(*args, **kwargs):
        per_sample, share = original(*args, **kwargs)
        per_sample_parts.append(per_sample.detach())
        return per_sample, share

    monkeypatch.setattr(text_to_unlearn, "zero_shot_shifts", spy)
    result = erase(
        "text_to_unlearn", toy_gan, concept="circle", keep_prompts=["a square", "a star", "a heart"],
        localise="alignment", max_train_steps=8, batch_size=2, direction_samples=4, eval_samples=0,
        train_part="all", learning_rate=0.01,
    )  # fmt: skip
    tuning = [h for h in result.loss_history if h["stage"] == 2.0]
    assert len(tuning) == len(per_sample_parts) == 4
    # Once the generator moved, the two samples' readings moved by different amounts (so a plain mean would differ);
    # the logged term is the second sample's alone.
    assert any(abs(part[0] - part[1]) > 1e-5 for part in per_sample_parts)
    for logs, part in zip(tuning, per_sample_parts):
        assert logs["loss_keep"] == pytest.approx(part[1].item(), rel=1e-5, abs=1e-9)


def test_keep_prompts_that_leave_one_value_warn_that_the_term_is_off(toy_gan):
    with pytest.warns(UserWarning, match="keep term is off"):
        result = erase(
            "text_to_unlearn", toy_gan, concept="circle", keep_prompts=["a circle", "a square"], max_train_steps=2,
            batch_size=2, direction_samples=2, eval_samples=0,
        )  # fmt: skip
    assert result.metrics["keep_prompts"] == []


def test_gamma_is_zero_between_a_generator_and_itself(toy_gan):
    same = degree_of_unlearning(toy_gan, toy_gan, "toy", ["a circle", "a star"], num_samples=64)
    assert same["gamma"] == 0.0
    assert same["backbone"].startswith("toy") and set(same["per_prompt"]) == {"a circle", "a star"}


# ---------------------------------------------------------------- the erasure, measured


@pytest.mark.slow
def test_erasing_circle_by_text_drops_it_and_keeps_the_rest(toy_gan, circle_erased, heldout):
    from gan.metrics import object_frequency

    erased = toy_gan.with_generator(circle_erased.components["generator"])
    before = object_frequency(toy_gan, heldout, num_samples=NUM_SAMPLES, seed=1)
    after = object_frequency(erased, heldout, num_samples=NUM_SAMPLES, seed=1)
    assert before["circle"] >= 0.08, f"the toy GAN should draw circles in about 1 of 8 samples: {before}"
    drop = (before["circle"] - after["circle"]) / before["circle"]
    # The toy preset drops circles by 69 % on 1000 latents (benchmarks/results/text_to_unlearn.json; 62-72 % at
    # erasure seeds 0-2). At 500 samples the circle share (about 14 %) has a standard error of 1.6 points, so a drop
    # of 0.5 (7 points) is clear of noise and below what the preset measures at any seed tried.
    assert drop >= 0.5, f"circle share {before['circle']:.3f} -> {after['circle']:.3f} (drop {drop:.2f})"
    # Survivors: no other object's share moves by more than 12 points (the 10, plus about one standard error
    # of a share's difference at 500 samples); the preset measures +5.4 (hearts) on 1000.
    shifts = {o: round(after[o] - before[o], 3) for o in before if o != "circle"}
    assert max(map(abs, shifts.values())) <= 0.12, f"other objects moved with the circles: {shifts}"
    # γ in the metrics says the CLIP alignment of "circle" moved, with the backbone named.
    assert circle_erased.metrics["gamma"] > 0 and not math.isnan(circle_erased.metrics["gamma"])
    assert circle_erased.metrics["gamma_backbone"].startswith("toy")


@pytest.mark.slow
def test_the_artifact_loads_back_into_a_bundle(toy_gan, circle_erased, tmp_path):
    from pipelines import apply_artifact

    circle_erased.save(tmp_path / "t2u")
    loaded = apply_artifact(toy_gan, tmp_path / "t2u")
    expected = toy_gan.with_generator(circle_erased.components["generator"]).sample(4, seed=3)
    assert torch.allclose(loaded.sample(4, seed=3), expected, atol=2e-3)


def test_the_command_line_erases_by_text_and_writes_an_artifact(tmp_path, capsys):
    from ui.cli import main

    out = tmp_path / "t2u-circle"
    argv = ["erase", "text_to_unlearn", "--concept", "circle", "--prompts", "a circle", "an orb"]
    argv += ["--max_train_steps", "4", "--batch_size", "2", "--direction_samples", "4", "--eval_samples", "0"]
    argv += ["--output_dir", str(out), "--num_validation_images", "0"]
    assert main(argv) == 0
    manifest = json.loads((out / "erasure.json").read_text())
    assert manifest["method"] == "text_to_unlearn" and manifest["config"]["prompts"] == ["a circle", "an orb"]
    assert (out / "gan_generator.safetensors").is_file()
