"""Exports (``pipelines.export``): a merged diffusers folder, a single-file checkpoint, a LoRA.

Every export is loaded in a subprocess that imports diffusers alone (it asserts that no module of this package was
imported) and its images are compared with the artifact's, sampled the same way in this process: identical for the
diffusers folder and the single file; for a LoRA, the toy judge's forget and retain rates within 5 points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipelines.errors import ArtifactError, ConfigError
from pipelines.export import export, original_sd_state_dict
from pipelines.sd import toy_path
from ui.cli import main

ROOT = Path(__file__).resolve().parents[1]

# The sampler both sides share: the plain diffusers call, one seeded generator per image.
SAMPLE_SOURCE = """
def sample(pipe, prompts, seeds, steps):
    import torch

    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    with torch.no_grad():
        return pipe(prompts, generator=generators, num_inference_steps=steps, output_type="pt").images.cpu()
"""

LOADER = (
    """
import json, sys
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file
"""
    + SAMPLE_SOURCE
    + """
mode, path, out, extra = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
torch.set_num_threads(extra["threads"])
kw = dict(safety_checker=None, requires_safety_checker=False, local_files_only=True)
if mode == "diffusers":
    pipe = StableDiffusionPipeline.from_pretrained(path, **kw)
elif mode == "single-file":
    pipe = StableDiffusionPipeline.from_single_file(path, config=extra["config"], **kw)
else:
    pipe = StableDiffusionPipeline.from_pretrained(extra["base"], **kw)
    pipe.load_lora_weights(path, adapter_name="erasure")
    pipe.set_adapters(["erasure"], adapter_weights=[extra.get("scale", 1.0)])
pipe.set_progress_bar_config(disable=True)
save_file({"images": sample(pipe, extra["prompts"], extra["seeds"], extra["steps"]).contiguous()}, out)
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("pipelines", "erasure", "eval", "ui", "gan"))
assert not ours, f"the loader imported {ours}"
"""
)


def _sample(pipe, prompts, seeds, steps):
    namespace: dict = {}
    exec(SAMPLE_SOURCE, namespace)
    return namespace["sample"](pipe, prompts, seeds, steps)


def _load_and_sample(tmp_path, mode, path, prompts, seeds, steps, **extra) -> torch.Tensor:
    """Load an export with diffusers alone in a fresh interpreter and return its images."""
    out = tmp_path / f"images-{mode}.safetensors"
    extra = {"prompts": prompts, "seeds": seeds, "steps": steps, "threads": torch.get_num_threads(), **extra}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", LOADER, mode, str(path), str(out), json.dumps(extra)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(out)["images"]


PROMPTS = ["a red star", "a blue star", "a green circle", "a yellow square"]
SEEDS = [0, 1, 2, 3]


def test_single_file_mapping_is_the_inverse_of_diffusers(toy_pipe):
    """Our diffusers -> original renaming, read back by diffusers' own converters, gives every tensor unchanged."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    state = original_sd_state_dict(toy_pipe)
    back = {
        "unet": convert_ldm_unet_checkpoint(state, dict(toy_pipe.unet.config)),
        "vae": convert_ldm_vae_checkpoint(state, dict(toy_pipe.vae.config)),
        "text_encoder": {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(state).items()},
    }
    for name, converted in back.items():
        reference = getattr(toy_pipe, name).state_dict()
        assert set(converted) == set(reference), name
        for key, value in reference.items():
            assert torch.equal(converted[key], value), key


def test_diffusers_export_loads_alone_and_reproduces_images(esd_star, tmp_path):
    erased, artifact = esd_star
    out = tmp_path / "esd-diffusers"
    assert main(["export", str(artifact), "--format", "diffusers", "--output", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "Erasure manifest" in card and '"method": "esd"' in card and "base_model: toy" in card
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    expected = _sample(erased, PROMPTS, SEEDS, 10)
    got = _load_and_sample(tmp_path, "diffusers", out, PROMPTS, SEEDS, 10)
    assert torch.equal(got, expected)


def test_single_file_export_loads_alone_and_reproduces_images(esd_star, tmp_path):
    erased, artifact = esd_star
    out = tmp_path / "esd.safetensors"
    report = export(artifact, out, format="single-file")
    assert report.bytes == out.stat().st_size and out.with_suffix(".md").is_file()
    keys = load_file(out).keys()
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in keys)
    assert any(k.startswith("first_stage_model.decoder.up.") for k in keys)
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    expected = _sample(erased, PROMPTS, SEEDS, 10)
    got = _load_and_sample(tmp_path, "single-file", out, PROMPTS, SEEDS, 10, config=str(toy_path("sd")))
    assert torch.equal(got, expected)


LORA_RANK = 4


@pytest.mark.slow
def test_lora_export_keeps_the_toy_rates(esd_star, toy_judge, tmp_path):
    """A rank-4 LoRA of ESD's delta: the toy judge's star (forget) and other-object (retain) rates within 5 points."""
    from eval.rates import toy_prompt_sets

    erased, artifact = esd_star
    out = tmp_path / "esd-lora"
    report = export(artifact, out, format="lora", rank=LORA_RANK)
    assert report.component == "unet" and report.layers and all(x["rank"] == LORA_RANK for x in report.layers)
    assert all("attn2" in x["name"] for x in report.layers)  # ESD-x trains the cross-attention only
    assert (out / "pytorch_lora_weights.safetensors").stat().st_size < 0.05 * sum(
        p.numel() * 4 for p in erased.unet.parameters()
    )
    sets = toy_prompt_sets("star")
    prompts = [p for name in sets for p in sets[name] for _ in range(4)]
    seeds = [s for name in sets for _ in sets[name] for s in range(4)]
    expected = _sample(erased, prompts, seeds, 25)
    got = _load_and_sample(tmp_path, "lora", out, prompts, seeds, 25, base=str(toy_path("sd")))

    def rates(images):
        out, start = {}, 0
        for name, group in sets.items():
            count = len(group) * 4
            out[name] = sum(v.success for v in toy_judge(images[start : start + count], name)) / count
            start += count
        forget = out["star"]
        retain = sum(v for k, v in out.items() if k != "star") / (len(out) - 1)
        return forget, retain

    (forget_a, retain_a), (forget_l, retain_l) = rates(expected), rates(got)
    assert abs(forget_a - forget_l) <= 0.05, (forget_a, forget_l, report.overall_error)
    assert abs(retain_a - retain_l) <= 0.05, (retain_a, retain_l, report.overall_error)


@pytest.fixture(scope="module")
def tiny_base_folder(tiny_pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-base") / "sd"
    tiny_pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _tiny_artifact(name, tiny_pipe, folder, **overrides):
    import erasure

    result = erasure.erase(name, tiny_pipe, concept="star", preset="toy", max_train_steps=2, **overrides)
    return result.apply(tiny_pipe), result.save(folder, base_model=tiny_pipe, num_validation_images=0)


@pytest.mark.parametrize(
    "method, overrides, component",
    [
        ("advunlearn", {}, "text_encoder"),
        (
            "salun",
            {
                "num_forget_images": 4,
                "num_retain_images": 4,
                "batch_size": 2,
                "generation_steps": 2,
                "cache_dir": None,
            },
            "unet",
        ),
    ],
)
def test_full_rank_lora_reproduces_the_artifact(method, overrides, component, tiny_pipe, tiny_base_folder, tmp_path):
    """At the largest rank every changed layer allows, the LoRA (loaded by diffusers alone) is the artifact."""
    erased, artifact = _tiny_artifact(method, tiny_pipe, tmp_path / method, **overrides)
    probe = export(artifact, tmp_path / "probe", format="lora", rank=1, base=tiny_pipe)
    assert probe.component == component and probe.layers
    rank = min(x["max_rank"] for x in probe.layers)
    report = export(artifact, tmp_path / "lora", format="lora", rank=rank, base=tiny_pipe)
    exact = [x for x in report.layers if x["max_rank"] == rank]
    assert exact and all(x["relative_error"] < 1e-4 for x in exact)
    prompts, seeds = ["a red star", "a blue circle"], [0, 1]
    base_images = _sample(tiny_pipe, prompts, seeds, 4)
    expected = _sample(erased, prompts, seeds, 4)
    got = _load_and_sample(tmp_path, "lora", tmp_path / "lora", prompts, seeds, 4, base=str(tiny_base_folder))
    # The LoRA moves the images from the base's to the artifact's, up to the layers the rank truncates.
    assert (got - expected).abs().max() <= 0.25 * max((base_images - expected).abs().max().item(), 1e-6) + 1e-4


def test_kohya_layout_loads_in_diffusers(esd_star, toy_pipe, tmp_path):
    _, artifact = esd_star
    out = tmp_path / "kohya"
    export(artifact, out, format="lora", rank=2, lora_layout="kohya", dtype="fp16")
    state = load_file(out / "pytorch_lora_weights.safetensors")
    assert all(k.startswith("lora_unet_") for k in state)
    assert all(v.dtype == torch.float16 for v in state.values())
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(toy_path("sd"), safety_checker=None, local_files_only=True)
    pipe.load_lora_weights(str(out), adapter_name="erasure")
    assert pipe.get_list_adapters() == {"unet": ["erasure"]}


def _fake_artifact(folder: Path, kind: str) -> Path:
    """A manifest-only artifact of ``kind``: the export refuses it before loading anything."""
    folder.mkdir(parents=True)
    manifest = {
        "format_version": 1,
        "method": "sfd" if kind == "generator" else "adapt_then_unlearn",
        "concept": "star",
        "artifact_kind": kind,
        "sampler": "one_step" if kind == "generator" else "stylegan2",
        "config": {},
        "base_model": {"name_or_path": "toy"},
        "files": {},
    }
    (folder / "erasure.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("kind", ["gan_generator", "generator"])
def test_gan_and_one_step_artifacts_refuse_single_file(kind, tmp_path, capsys):
    artifact = _fake_artifact(tmp_path / kind, kind)
    out = tmp_path / "out.safetensors"
    assert main(["export", str(artifact), "--format", "single-file", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be exported as single-file" in err
    assert not out.exists()
    with pytest.raises(ArtifactError):
        export(artifact, out, format="lora")


def test_rank_above_layer_size_and_existing_output_are_one_line_errors(esd_star, tmp_path, capsys):
    _, artifact = esd_star
    out = tmp_path / "lora"
    assert main(["export", str(artifact), "--format", "lora", "--rank", "100000", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "above the size of unet layer" in err
    assert not out.exists() and not list(tmp_path.glob(".lora.partial-*"))
    with pytest.raises(ConfigError):
        export(artifact, out, format="lora", rank=0)

    out.mkdir()
    assert main(["export", str(artifact), "--format", "diffusers", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--overwrite" in err


@pytest.mark.slow
def test_sd14_architecture_single_file_loads_through_from_single_file(tmp_path):
    """SD v1.4's architecture (random weights): every key and shape survives from_single_file."""
    import gc

    from diffusers import StableDiffusionPipeline

    sys.path.insert(0, str(ROOT))
    from benchmarks.doco_sd14_step import sd14_random_pipeline

    pipe = sd14_random_pipeline()
    config = tmp_path / "config"
    pipe.save_config(config)
    for name in ("unet", "vae", "scheduler"):
        getattr(pipe, name).save_config(config / name)
    pipe.text_encoder.config.save_pretrained(config / "text_encoder")
    pipe.tokenizer.save_pretrained(config / "tokenizer")
    shapes = {
        name: {k: tuple(v.shape) for k, v in getattr(pipe, name).state_dict().items()}
        for name in ("unet", "vae", "text_encoder")
    }
    file = tmp_path / "sd14.safetensors"
    from safetensors.torch import save_file

    state = original_sd_state_dict(pipe, dtype=torch.float16)
    assert sum(k.startswith("model.diffusion_model.") for k in state) == len(shapes["unet"])
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in state  # SD v1's first upsampler
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in state
    save_file(state, file)
    del pipe, state
    gc.collect()
    loaded = StableDiffusionPipeline.from_single_file(
        file, config=str(config), torch_dtype=torch.float16, local_files_only=True, safety_checker=None
    )
    for name, expected in shapes.items():
        got = {k: tuple(v.shape) for k, v in getattr(loaded, name).state_dict().items()}
        assert got == expected, name


def test_studio_exports_the_current_artifact(esd_star, toy_pipe, tmp_path):
    import zipfile

    from ui import studio as handlers

    _, artifact = esd_star
    studio = handlers.Studio(output_dir=tmp_path / "runs", save_samples=False)
    session = handlers.Session(
        model_type=handlers.STABLE_DIFFUSION, base=toy_pipe, base_name="toy", artifact_dir=artifact
    )
    session.method, session.concept = "esd", "star"
    download, status = handlers.export_artifact(studio, session, "lora", 2, "fp16")
    assert "Rank 2" in status and "relative" in status
    names = zipfile.ZipFile(download).namelist()
    assert any(n.endswith("pytorch_lora_weights.safetensors") for n in names)
    assert any(n.endswith("README.md") for n in names)
    download, status = handlers.export_artifact(studio, session, "single-file", 4, "fp32")
    assert download.endswith(".safetensors") and Path(download).with_suffix(".md").is_file()
    card = Path(download).with_suffix(".md").read_text()
    assert "single-file export" in card and "Erasure manifest" in card
    with pytest.raises(Exception, match="no artifact"):
        handlers.export_artifact(studio, handlers.Session(), "lora", 4, "fp32")
