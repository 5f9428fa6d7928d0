"""The artifact folder: manifest contents, verification on load, and refusals that lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import erasure
from pipelines.artifacts import MANIFEST, apply_artifact, read_manifest, save_artifact
from pipelines.errors import ArtifactError


@pytest.fixture(scope="module")
def esd_result(tiny_pipe):
    return erasure.erase("esd", tiny_pipe, concept="star", max_train_steps=2, num_inference_steps=4)


@pytest.fixture
def artifact(esd_result, tiny_pipe, tmp_path) -> Path:
    return esd_result.save(tmp_path / "esd-star", base_model=tiny_pipe)


def test_manifest_lists_everything(artifact, esd_result):
    manifest = json.loads((artifact / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["method"] == "esd" and manifest["concept"] == "star"
    assert manifest["config"]["method"] == "esd"
    assert manifest["base_model"]["name_or_path"] == "tiny-random-sd-0"
    assert set(manifest["base_model"]["fingerprints"]) == {"unet", "text_encoder", "vae"}
    assert {"torch", "diffusers", "transformers"} <= set(manifest["library_versions"])
    assert manifest["components"]["unet"]["keys"] == sorted(esd_result.trained_keys["unet"])
    assert {"unet_partial.safetensors", "README.md", "samples.png", "loss.png"} <= set(manifest["files"])
    assert manifest["metrics"]["artifact_bytes"] > 0
    assert "wall_seconds" in manifest["metrics"] and "trainable_parameters" in manifest["metrics"]
    card = (artifact / "README.md").read_text()
    assert "base_model: tiny-random-sd-0" in card and "apply_artifact" in card


def test_flipped_byte_is_refused(artifact, tiny_pipe):
    target = artifact / "unet_partial.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        apply_artifact(tiny_pipe, artifact)


def test_missing_file_is_refused(artifact, tiny_pipe):
    (artifact / "unet_partial.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        apply_artifact(tiny_pipe, artifact)


def test_unknown_format_version_is_refused(artifact, tiny_pipe):
    manifest = json.loads((artifact / MANIFEST).read_text())
    manifest["format_version"] = 99
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        read_manifest(artifact)


def test_corrupt_manifest_is_refused(artifact):
    (artifact / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(artifact)


def test_not_an_artifact(tmp_path, tiny_pipe):
    with pytest.raises(ArtifactError, match="does not exist"):
        apply_artifact(tiny_pipe, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="no erasure.json"):
        apply_artifact(tiny_pipe, tmp_path / "empty")


def test_different_base_model_is_refused(artifact, other_tiny_pipe):
    with pytest.raises(ArtifactError, match="differs from the one given"):
        apply_artifact(other_tiny_pipe, artifact)
    # Explicitly allowed, it applies (same architecture).
    assert apply_artifact(other_tiny_pipe, artifact, allow_other_base=True) is not other_tiny_pipe


def test_existing_artifact_is_not_overwritten(esd_result, artifact):
    before = (artifact / MANIFEST).read_bytes()
    with pytest.raises(ArtifactError, match="already holds an artifact"):
        esd_result.save(artifact)
    assert (artifact / MANIFEST).read_bytes() == before
    esd_result.save(artifact, overwrite=True)
    assert read_manifest(artifact)["method"] == "esd"


def test_failed_save_leaves_nothing_behind(esd_result, tiny_pipe, tmp_path, monkeypatch):
    import pipelines.artifacts as artifacts

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(artifacts, "_write_sample_grid", boom)
    with pytest.raises(RuntimeError):
        save_artifact(esd_result, tmp_path / "out", base_model=tiny_pipe)
    assert list(tmp_path.iterdir()) == []


def test_partial_keys_must_match_manifest(artifact, tiny_pipe):
    from safetensors.torch import load_file, save_file

    manifest = json.loads((artifact / MANIFEST).read_text())
    tensors = load_file(artifact / "unet_partial.safetensors")
    tensors.pop(next(iter(tensors)))
    save_file(tensors, artifact / "unet_partial.safetensors")
    # Re-hash so only the key check can catch it.
    from pipelines.artifacts import file_sha256

    manifest["files"]["unet_partial.safetensors"] = file_sha256(artifact / "unet_partial.safetensors")
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="other tensors"):
        apply_artifact(tiny_pipe, artifact)


def test_fingerprint_samples_tensors_larger_than_float32_indexing():
    """SD v1.4 holds tensors above 2**24 entries, where a float32 linspace of indices runs past the end."""
    from pipelines.artifacts import fingerprint

    module = torch.nn.Module()
    module.weight = torch.nn.Parameter(torch.zeros(29_491_200))
    first = fingerprint(module)
    with torch.no_grad():
        module.weight[-1] = 1.0  # the last entry is always sampled
    assert fingerprint(module) != first
