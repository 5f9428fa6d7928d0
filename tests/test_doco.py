"""DoCo: the config's checks, the captions, the concept-preserving gradient, and erasing "star" from the toy world."""

from __future__ import annotations

import pytest
import torch
from conftest import needs_toy_sd

import erasure
from erasure.doco import DoCoConfig, PatchDiscriminator, conflict_free_gradients, real_captions, toy_captions
from pipelines.errors import ConfigError
from ui.cli import main


def test_anchor_equal_to_the_concept_is_refused():
    with pytest.raises(ConfigError, match="is the concept itself"):
        DoCoConfig(concept="parachute", anchor="Parachute")


def test_surgery_needs_prior_preservation():
    with pytest.raises(ConfigError, match="needs prior_preservation=True"):
        DoCoConfig(concept="parachute", anchor="airplane", prior_preservation=False)
    DoCoConfig(concept="parachute", anchor="airplane", prior_preservation=False, gradient_surgery="none")


def test_caption_files_are_checked_before_anything_runs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ConfigError, match="holds no captions"):
        DoCoConfig(concept="parachute", anchor="airplane", caption_file=str(empty))
    other = tmp_path / "other.txt"
    other.write_text("a photo of a dog\na cat on a sofa\n")
    with pytest.raises(ConfigError, match="names the anchor 'airplane'"):
        DoCoConfig(concept="parachute", anchor="airplane", caption_file=str(other))
    with pytest.raises(ConfigError, match="does not exist"):
        DoCoConfig(concept="parachute", anchor="airplane", caption_file=str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--anchor", "star"], "is the concept itself"),
        (["--anchor", "circle", "--caption_file", "EMPTY"], "holds no captions"),
        (["--anchor", "airplane", "--caption_file", "DOGS"], "names the anchor"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    files = {"EMPTY": tmp_path / "empty.txt", "DOGS": tmp_path / "dogs.txt"}
    files["EMPTY"].write_text("")
    files["DOGS"].write_text("a photo of a dog\n")
    argv = [str(files.get(a, a)) for a in argv]
    code = main(["erase", "doco", "--concept", "star", "--output_dir", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_toy_captions_differ_only_in_the_named_value():
    anchors, targets = toy_captions("circle", "star", 40, seed=0)
    from pipelines.toy.world import canonical

    for a, t in zip(anchors, targets):
        a_words, t_words = a.split(), t.split()
        assert len(a_words) == len(t_words)
        changed = [(x, y) for x, y in zip(a_words, t_words) if x != y and {x, y} != {"a", "an"}]
        assert len(changed) == 1 and canonical(changed[0][0]) == "circle" and canonical(changed[0][1]) == "star"
    with pytest.raises(ConfigError, match="same kind"):
        toy_captions("blue", "star", 4, seed=0)


def test_real_captions_replace_the_anchor_or_append_the_style():
    anchors, targets = real_captions(DoCoConfig(concept="parachute", anchor="airplane"), 10)
    assert len(anchors) == len(targets) == 10
    assert all("airplane" in a and "parachute" in t and "airplane" not in t for a, t in zip(anchors, targets))
    anchors, targets = real_captions(DoCoConfig(concept="van gogh", anchor="painting", concept_type="style"), 3)
    assert all(t == f"{a}, in the style of van gogh" for a, t in zip(anchors, targets))


def test_doco_surgery_removes_only_the_conflicting_cosine():
    g_p = {"w": torch.tensor([1.0, 0.0])}
    agreeing = {"w": torch.tensor([1.0, 1.0])}
    assert torch.equal(conflict_free_gradients(agreeing, g_p, "doco", 1.0, 1.0)["w"], agreeing["w"])
    conflicting = {"w": torch.tensor([-1.0, 1.0])}
    cos = -(2**-0.5)
    out = conflict_free_gradients(conflicting, g_p, "doco", 1.0, 1.0)["w"]
    # g_a − λ·cos·ĝ_p: the cosine times the unit vector, not PCGrad's full projection.
    assert torch.allclose(out, torch.tensor([-1.0 - cos, 1.0]))


def test_pcgrad_projects_both_off_each_other_and_sums():
    g_p = {"w": torch.tensor([1.0, 0.0])}
    g_a = {"w": torch.tensor([-1.0, 1.0])}
    out = conflict_free_gradients(g_a, g_p, "pcgrad", 1.0, 1.0)["w"]
    a_proj = torch.tensor([0.0, 1.0])  # g_a with its g_p component removed
    p_proj = torch.tensor([1.0, 0.0]) - (-1.0 / 2.0) * torch.tensor([-1.0, 1.0])  # g_p off g_a
    assert torch.allclose(out, a_proj + p_proj)
    assert float((a_proj * g_p["w"]).sum()) == 0.0


@pytest.mark.parametrize("size, layers", [(8, 1), (64, 3)])
def test_patch_discriminator_gives_patch_logits(size, layers):
    d = PatchDiscriminator(4, width=8, layers=layers)
    logits = d(torch.randn(2, 4, size, size))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] >= 1


def test_two_steps_train_only_cross_attention_kv_and_keep_a_discriminator(tiny_pipe):
    before = {k: v.clone() for k, v in tiny_pipe.unet.state_dict().items()}
    result = erasure.erase(
        "doco",
        tiny_pipe,
        concept="star",
        anchor="circle",
        max_train_steps=3,
        warmup_steps=1,
        num_anchor_images=4,
        anchor_inference_steps=2,
        batch_size=2,
        discriminator_layers=1,
        discriminator_width=8,
        cache_dir=None,
        save_discriminator=True,
    )
    keys = result.trained_keys["unet"]
    assert keys and all(".attn2.to_k." in k or ".attn2.to_v." in k for k in keys)
    after = result.components["unet"].state_dict()
    changed = {k for k in keys if not torch.equal(after[k], before[k])}
    assert changed == set(keys)
    assert all(torch.equal(v, tiny_pipe.unet.state_dict()[k]) for k, v in before.items())  # input untouched
    assert "discriminator" in result.extra_tensors
    assert {"loss_adv", "loss_prior", "loss_d"} <= set(result.loss_history[-1])


@pytest.fixture(scope="module")
def doco_star_rates(toy_pipe, toy_judge, toy_star_base_rates, tmp_path_factory):
    """DoCo (toy preset) erasing "star"; rates on 8 seeds x 6 colours per object (48 samples, 2 points each)."""
    from eval.rates import erasure_rates

    cache = tmp_path_factory.mktemp("doco-cache")
    result = erasure.erase("doco", toy_pipe, concept="star", preset="toy", cache_dir=str(cache))
    return erasure_rates(
        toy_pipe,
        result.apply(toy_pipe),
        "star",
        toy_judge,
        seeds=8,
        num_inference_steps=25,
        before=toy_star_base_rates,
    )


@needs_toy_sd
@pytest.mark.slow
def test_doco_erases_star_on_the_toy_world(doco_star_rates):
    before, after = doco_star_rates["before"], doco_star_rates["after"]
    assert before["star"] >= 0.8, f"the toy model should draw stars before erasure: {before}"
    assert after["star"] <= 0.30, f"DoCo left too many stars: {before} -> {after}"


@needs_toy_sd
@pytest.mark.slow
def test_doco_leaves_every_other_object_within_ten_points(doco_star_rates):
    before, after = doco_star_rates["before"], doco_star_rates["after"]
    shifts = {c: abs(after[c] - before[c]) for c in before if c != "star"}
    assert max(shifts.values()) <= 0.10, f"DoCo moved another object by more than 10 points: {shifts}"


@pytest.mark.parametrize("name", ["vangogh", "parachute", "nudity"])
def test_paper_configs_load(name):
    import json
    from pathlib import Path

    values = json.loads((Path(__file__).parents[1] / "configs" / "doco" / f"paper-{name}.json").read_text())
    config = erasure.config_from_dict(values)
    assert config.warmup_steps == 1000 and config.max_train_steps == 2000 and config.anchor
