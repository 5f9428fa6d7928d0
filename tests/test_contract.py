"""The contract every registered method meets, run for each name in ``list_methods()`` (peft's test matrix).

A 2-step run on a tiny model must change only the method's target components, leave the input model untouched,
save an artifact that applies back to the same images, round-trip its config through JSON, and expose a CLI.
"""

from __future__ import annotations

import json

import pytest
import torch

import erasure
from pipelines.artifacts import apply_artifact, fingerprint, model_components
from ui.cli import main

# Per-method overrides that keep a 2-step run tiny (on top of the method's "toy" preset).
TINY_OVERRIDES: dict[str, dict] = {
    "esd": {"num_inference_steps": 4, "batch_size": 1},
    "salun": {
        "num_forget_images": 4,
        "num_retain_images": 4,
        "batch_size": 2,
        "generation_steps": 2,
        "cache_dir": None,
    },
    "doco": {
        "anchor": "circle",
        "num_anchor_images": 4,
        "anchor_inference_steps": 2,
        "batch_size": 2,
        "warmup_steps": 1,
        "cache_dir": None,
    },
    # The tiny model has no distilled one-step generator: start SFD's generator from the teacher's UNet.
    "sfd": {"initial_generator": None, "init_from_teacher": True, "override": "circle", "batch_size": 2},
    # The tiny GAN draws 16x16 images, which the toy judge's perceptual features do not read.
    "adapt_then_unlearn": {"retain_anchor_space": "outputs", "output_repulsion_space": "outputs"},
    # The toy preset's learning-rate warm-up starts at 0, so its one fine-tuning step here would change nothing.
    "text_to_unlearn": {
        "perceptual": "none",
        "batch_size": 2,
        "direction_samples": 4,
        "eval_samples": 0,
        "lr_warmup_steps": 0,
    },
}


def _model_for(method, tiny_pipe, tiny_gan):
    return tiny_gan if method.model_type == "stylegan2" else tiny_pipe


@pytest.fixture(scope="session")
def tiny_gan():
    from doubles import tiny_bundle

    return tiny_bundle(seed=0)


def _run(name, model):
    cls = erasure.get_method_class(name)
    overrides = {"max_train_steps": 2, **TINY_OVERRIDES.get(name, {})}
    preset = "toy" if "toy" in cls.config_class.presets else None
    concept = "circle" if cls.model_type == "stylegan2" else "star"
    return erasure.erase(name, model, preset=preset, concept=concept, **overrides)


def _state_snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", erasure.list_methods())
def test_two_steps_change_only_targets_and_not_the_input(name, tiny_pipe, tiny_gan, tmp_path):
    method = erasure.get_method_class(name)
    model = _model_for(method, tiny_pipe, tiny_gan)
    if model is None:
        pytest.skip("no tiny GAN bundle available")
    before = {n: _state_snapshot(m) for n, m in model_components(model).items()}
    objects_before = dict(model_components(model))

    result = _run(name, model)

    # The input is not mutated: same module objects, bit-identical weights.
    for n, m in model_components(model).items():
        assert m is objects_before[n]
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[n][k]), f"{name} mutated the input's {n}.{k}"
    # Only target components come back, and something in them changed.
    assert set(result.components) <= set(method.targets)
    changed_any = False
    for comp_name, module in result.components.items():
        # A one-step generator started from the teacher's UNet is compared with that UNet.
        base_state = before.get(comp_name) or (before.get("unet") if comp_name == "generator" else None)
        if base_state is None:
            continue
        changed = {k for k, v in module.state_dict().items() if k in base_state and not torch.equal(v, base_state[k])}
        changed_any |= bool(changed)
        trained = set(result.trained_keys.get(comp_name, base_state))
        assert changed <= trained, f"{name} changed tensors outside its trained keys: {sorted(changed - trained)[:5]}"
    assert changed_any, f"{name} changed nothing in 2 steps"
    assert result.metrics["trainable_parameters"] > 0
    assert result.metrics["wall_seconds"] > 0
    assert len(result.loss_history) == 2


@pytest.mark.parametrize("name", erasure.list_methods())
def test_save_load_apply_reproduces_images(name, tiny_pipe, tiny_gan, tmp_path):
    method = erasure.get_method_class(name)
    model = _model_for(method, tiny_pipe, tiny_gan)
    if model is None:
        pytest.skip("no tiny GAN bundle available")
    result = _run(name, model)
    path = result.save(tmp_path / "artifact", base_model=model)
    manifest = json.loads((path / "erasure.json").read_text())
    assert manifest["method"] == name
    assert set(manifest["files"]) == {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {
        "erasure.json"
    }
    applied = apply_artifact(model, path)
    if method.model_type == "stylegan2":
        in_memory = result.apply(model)  # the bundle samples deterministically
        assert torch.allclose(in_memory.sample(4, seed=3), applied.sample(4, seed=3), atol=1e-6)
        return
    in_memory = result.apply(model)
    from pipelines.sd import generate

    a = generate(in_memory, ["a star", "a circle"], seeds=[5, 6], num_inference_steps=4)
    b = generate(applied, ["a star", "a circle"], seeds=[5, 6], num_inference_steps=4)
    assert torch.allclose(a, b, atol=1e-6)
    # The base still draws what it drew: applying returned a new pipeline.
    assert fingerprint(model.unet) == result.base["fingerprints"]["unet"]


@pytest.mark.parametrize("name", erasure.list_methods())
def test_config_round_trips_through_json(name):
    cls = erasure.get_config_class(name)
    preset = cls.presets.get("toy", {})
    config = erasure.make_config(name, concept="star", **preset)
    again = erasure.config_from_dict(json.loads(config.to_json()))
    assert again == config
    assert type(again) is cls


@pytest.mark.parametrize("name", erasure.list_methods())
def test_config_fields_have_help_and_validation(name):
    cls = erasure.get_config_class(name)
    assert all(text for text in cls.help().values()), "every config field needs help text"
    with pytest.raises(ValueError, match="concept"):
        erasure.make_config(name, concept="  ")
    with pytest.raises(ValueError, match="no option"):
        erasure.make_config(name, concept="star", not_a_field=1)


@pytest.mark.parametrize("name", erasure.list_methods())
def test_cli_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["erase", name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--concept" in out and "--max_train_steps" in out and "--output_dir" in out


def test_registry_refuses_bad_names_and_duplicates():
    from erasure.base import EraseMethod, register

    class Cfg(erasure.EraseConfig):
        method = "BadName"

    class Bad(EraseMethod):
        name = "BadName"
        config_class = Cfg

    with pytest.raises(ValueError, match="lower-case"):
        register(Bad)

    class Dup(EraseMethod):
        name = "esd"
        config_class = erasure.get_config_class("esd")

    with pytest.raises(ValueError, match="already registered"):
        register(Dup)
    assert "esd" in erasure.list_methods()
