"""SFD and the one-step pipeline: config checks, the SiD loss, save/load, bad input, and forgetting "star" on the toy
world from the shipped one-step generator against a control without the forget term."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import needs_toy_sd

import erasure
from erasure.sfd import SFDConfig
from pipelines.errors import ConfigError
from pipelines.one_step import OneStepPipeline, load_one_step, one_step_from_teacher, sid_generator_loss
from pipelines.sd import generate
from ui.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _seeded(n: int, start: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(start + i) for i in range(n)]


def test_override_equal_to_the_concept_is_refused():
    with pytest.raises(ConfigError, match="is the concept being forgotten"):
        SFDConfig(concept="Brad Pitt", override="brad pitt")


def test_sid_loss_for_alpha_one_is_the_official_sd_form():
    gen = torch.Generator().manual_seed(0)
    x_g, f_p, f_psi = (torch.randn(3, 4, 8, 8, generator=gen) for _ in range(3))
    omega = (f_p - x_g).abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = ((f_p - f_psi) * (f_psi - x_g) / omega).sum(dim=(1, 2, 3))
    assert torch.allclose(sid_generator_loss(x_g, f_p, f_psi, alpha=1.0), expected, atol=1e-4)
    # ω carries no gradient: the loss is linear in f_ψ's direction only through the bracket.
    x_g.requires_grad_(True)
    sid_generator_loss(x_g, f_p, f_psi).sum().backward()
    assert torch.allclose(x_g.grad, -((f_p - f_psi) / omega), atol=1e-5)


def test_real_model_needs_an_override_and_an_initial_generator(tiny_pipe):
    with pytest.raises(ConfigError, match="needs an override"):
        erasure.erase("sfd", tiny_pipe, concept="dog", max_train_steps=1)
    with pytest.raises(ConfigError, match="pass initial_generator"):
        erasure.erase("sfd", tiny_pipe, concept="dog", override="cat", max_train_steps=1)


def test_forget_prompts_must_name_the_concept(tiny_pipe, tmp_path):
    prompts = tmp_path / "forget.txt"
    prompts.write_text("a photo of a dog\na cat on a sofa\n")
    with pytest.raises(ConfigError, match="does not name the concept"):
        erasure.erase(
            "sfd", tiny_pipe, concept="dog", override="wolf", forget_prompts_file=str(prompts), init_from_teacher=True
        )


def test_one_step_pipeline_samples_in_one_call_and_round_trips(tiny_pipe, tmp_path):
    pipe = one_step_from_teacher(tiny_pipe, copy.deepcopy(tiny_pipe.unet), 625)
    images = pipe(["a star", "a circle"], generator=_seeded(2), output_type="pt").images
    assert images.shape[0] == 2 and 0 <= images.min() and images.max() <= 1
    with pytest.raises(ValueError, match="exactly one step"):
        pipe(["a star"], num_inference_steps=25)
    pipe.save_pretrained(tmp_path / "one-step")
    assert json.loads((tmp_path / "one-step" / "model_index.json").read_text())["_class_name"] == "OneStepPipeline"
    loaded = OneStepPipeline.from_pretrained(tmp_path / "one-step")
    again = loaded(["a star", "a circle"], generator=_seeded(2), output_type="pt").images
    assert torch.equal(images, again)
    assert loaded.init_timestep == 625
    # The studio's loaders recognise the folder, and generate() drops the multi-step settings.
    from pipelines import load_sd

    via_loader = load_sd(tmp_path / "one-step")
    assert isinstance(via_loader, OneStepPipeline)
    assert torch.equal(generate(via_loader, ["a star", "a circle"], seeds=[0, 1], num_inference_steps=25), images)


@pytest.fixture(scope="module")
def tiny_sfd_artifact(tiny_pipe, tmp_path_factory):
    result = erasure.erase(
        "sfd", tiny_pipe, concept="star", override="circle", init_from_teacher=True, max_train_steps=1, batch_size=2
    )
    return result.save(tmp_path_factory.mktemp("sfd") / "artifact", base_model=tiny_pipe)


SFD_ONE_STEP = {
    "concept": "star",
    "override": "circle",
    "init_from_teacher": True,
    "max_train_steps": 1,
    "batch_size": 2,
}


def test_checkpointing_takes_the_same_step_and_leaves_the_teacher_as_it_was(tiny_pipe):
    """The SD v1.x memory lever (benchmarks/sfd_sd14_step.py): gradient checkpointing recomputes activations, so one
    step matches the plain one, and the teacher (the caller's UNet) gets its checkpointing switched back off."""
    plain = erasure.erase("sfd", tiny_pipe, **SFD_ONE_STEP).components["generator"].state_dict()
    checkpointed = erasure.erase("sfd", tiny_pipe, gradient_checkpointing=True, **SFD_ONE_STEP)
    assert not tiny_pipe.unet.is_gradient_checkpointing
    state = checkpointed.components["generator"].state_dict()
    assert all(torch.allclose(v, plain[k], atol=1e-6) for k, v in state.items())


def test_retain_anchor_holds_the_retain_samples_near_the_start(tiny_pipe):
    """λ_a (not in the paper) regresses the retain samples onto the initial generator's: zero at the first step (the
    generator is its start), logged after, and over a few steps it keeps the retain samples closer to where they
    began than the same run without it (same seed, same prompts, same noise)."""
    from pipelines.data import object_retain_prompts
    from pipelines.one_step import one_step_x0
    from pipelines.sd import encode_prompts

    run = {**SFD_ONE_STEP, "max_train_steps": 6, "learning_rate": 1e-3, "fake_learning_rate": 1e-3, "forget_weight": 5}
    plain = erasure.erase("sfd", tiny_pipe, **run)
    anchored = erasure.erase("sfd", tiny_pipe, retain_anchor_weight=1e4, **run)
    assert anchored.loss_history[0]["loss_anchor"] == 0 and anchored.loss_history[-1]["loss_anchor"] > 0
    assert all(h["loss_anchor"] == 0 for h in plain.loss_history)

    emb = encode_prompts(tiny_pipe.tokenizer, tiny_pipe.text_encoder, object_retain_prompts("star")[:2])
    unet = tiny_pipe.unet
    z = torch.randn(
        2,
        unet.config.in_channels,
        unet.config.sample_size,
        unet.config.sample_size,
        generator=torch.Generator().manual_seed(7),
    )
    ac = tiny_pipe.scheduler.alphas_cumprod
    t_init = anchored.config.init_timestep
    with torch.no_grad():
        start = one_step_x0(unet, z, emb, t_init, ac)
        moved = {
            name: (one_step_x0(r.components["generator"], z, emb, t_init, ac) - start).norm().item()
            for name, r in (("plain", plain), ("anchored", anchored))
        }
    assert moved["anchored"] < moved["plain"], moved


def test_8bit_adam_steps_the_way_adam_does(tiny_pipe):
    """8-bit Adam (bitsandbytes, the lowmem extra) quantises its moments, so its step differs from Adam's, but it
    points the same way."""
    pytest.importorskip("bitsandbytes")
    plain = erasure.erase("sfd", tiny_pipe, **SFD_ONE_STEP).components["generator"].state_dict()
    low = erasure.erase("sfd", tiny_pipe, use_8bit_adam=True, **SFD_ONE_STEP).components["generator"].state_dict()
    start = tiny_pipe.unet.state_dict()  # init_from_teacher: both runs stepped from the teacher's weights
    adam_step = torch.cat([(plain[k] - start[k]).flatten() for k in start])
    adam8_step = torch.cat([(low[k] - start[k]).flatten() for k in start])
    assert adam8_step.abs().max() > 0 and torch.nn.functional.cosine_similarity(adam_step, adam8_step, dim=0) > 0.9


def test_attack_on_a_one_step_artifact_is_one_line_and_exit_2(tiny_sfd_artifact, tmp_path, capsys):
    code = main(["attack", str(tiny_sfd_artifact), "--prompts", "toy:star", "--output_dir", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "does not apply to a one-step generator" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "a").exists()


def test_library_attack_refuses_a_one_step_pipeline(tiny_pipe, tiny_sfd_artifact):
    from eval.unlearndiffatk import attack
    from pipelines import apply_artifact

    with pytest.raises(ConfigError, match="does not apply to a one-step generator"):
        attack(apply_artifact(tiny_pipe, tiny_sfd_artifact), ["a star"], "toy", concept="star")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--concept", "star", "--override", "star"], "is the concept being forgotten"),
        (["--config", str(ROOT / "configs" / "sfd" / "paper-celebrity.json")], "pass initial_generator"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, message, tiny_pipe, tmp_path, capsys):
    tiny_pipe.save_pretrained(tmp_path / "tiny")
    code = main(
        ["erase", "sfd", "--pretrained_model_name_or_path", str(tmp_path / "tiny"), *argv]
        + ["--output_dir", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["celebrity", "nudity"])
def test_paper_configs_load_and_leave_the_initial_generator_to_the_user(name):
    values = json.loads((ROOT / "configs" / "sfd" / f"paper-{name}.json").read_text())
    config = erasure.config_from_dict(values)
    assert config.initial_generator is None and config.override
    assert (config.learning_rate, config.fake_learning_rate, config.init_timestep) == (1e-6, 3e-6, 625)


# ---------------------------------------------------------------- the toy world


@needs_toy_sd
def test_the_shipped_one_step_generator_loads_and_draws_what_it_is_asked(toy_judge):
    from pipelines import load_sd
    from pipelines.toy.quality import sample_accuracy

    pipe = load_sd("toy-onestep")
    assert isinstance(pipe, OneStepPipeline)
    accuracy = sample_accuracy(pipe, toy_judge, seeds=2)
    assert accuracy["object"] >= 0.8, accuracy


@pytest.fixture(scope="module")
def sfd_star_rates(toy_pipe, toy_judge):
    """SFD (toy preset, 50 steps) forgetting "star" and its control (forget weight 0), same steps and seed; rates of
    both on 8 seeds x 6 colours (one-step sampling is cheap), every other object's rate beside them."""
    from eval.rates import concept_rates, toy_prompt_sets

    prompt_sets = toy_prompt_sets("star")
    rates = {}
    for name, overrides in (("sfd", {}), ("control", {"forget_weight": 0.0})):
        result = erasure.erase("sfd", toy_pipe, concept="star", preset="toy", seed=0, max_train_steps=50, **overrides)
        rates[name] = concept_rates(result.apply(toy_pipe), prompt_sets, toy_judge, seeds=8)["rates"]
    rates["one_step"] = concept_rates(load_one_step("toy"), prompt_sets, toy_judge, seeds=8)["rates"]
    return rates


@needs_toy_sd
@pytest.mark.slow
def test_sfd_forgets_star_where_the_control_does_not(sfd_star_rates):
    sfd, control = sfd_star_rates["sfd"], sfd_star_rates["control"]
    assert control["star"] >= 0.6, f"the control should still draw stars: {sfd_star_rates}"
    assert sfd["star"] <= control["star"] - 0.4, f"the forget term should remove stars: {sfd_star_rates}"


@needs_toy_sd
@pytest.mark.slow
def test_sfd_keeps_the_other_objects(sfd_star_rates):
    sfd, start = sfd_star_rates["sfd"], sfd_star_rates["one_step"]
    shifts = {c: abs(sfd[c] - start[c]) for c in start if c != "star"}
    assert max(shifts.values()) <= 0.15, f"SFD moved another object too far: {shifts}"
