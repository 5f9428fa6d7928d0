"""Test setup: offline, seeded, quiet. Fixtures give the toy world's pipeline and a tiny random one."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from filelock import FileLock  # noqa: E402

# Under pytest-xdist (`-n auto`, the README's test command) each worker gets an equal share of the cores: small toy
# models gain little from intra-op threads, so two one-thread workers finish the suite sooner than one two-thread run.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# The toy world ships inside the package, so its tests never skip: missing weights are a failure that names the
# rebuild command (pipelines.sd raises it), not a silently smaller suite.
needs_toy_sd = pytest.mark.toy


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_pipe():
    """A random-init tiny SD pipeline (seed 0). Do not mutate it: methods never do, and tests check that."""
    from pipelines.tiny import tiny_sd

    return tiny_sd(0)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory, tiny_pipe):
    """``tiny_pipe`` saved as a diffusers folder, for the command line and subprocesses."""
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    tiny_pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def other_tiny_pipe():
    """A second tiny pipeline with different weights: a different base model."""
    from pipelines.tiny import tiny_sd

    return tiny_sd(1)


@pytest.fixture(scope="session")
def toy_pipe():
    """The bundled toy Stable Diffusion."""
    from pipelines.sd import load_sd

    return load_sd("toy")


@pytest.fixture(scope="session")
def toy_judge():
    from eval.judges import load_judge

    return load_judge("toy")


def _shared_dir(tmp_path_factory, name: str) -> tuple[Path, FileLock | None]:
    """A folder every xdist worker of this run sees (and the lock that guards it), or a private one without xdist.

    Expensive session fixtures write their result there once; the other workers read it (pytest-xdist's recipe).
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.mktemp(name), None
    root = tmp_path_factory.getbasetemp().parent / name
    root.mkdir(exist_ok=True)
    return root, FileLock(str(root) + ".lock")


@pytest.fixture(scope="session")
def esd_star(tmp_path_factory, toy_pipe):
    """ESD (toy preset) erasing "star" from the toy model, run once per test run and saved as an artifact.

    Returns ``(erased_pipeline, artifact_path)``; several slow tests share it (ESD's own effect, the attack's central
    finding, the scorecard), so the suite pays for one erasure, across xdist workers too.
    """
    import erasure
    from pipelines.artifacts import MANIFEST, apply_artifact

    folder, lock = _shared_dir(tmp_path_factory, "esd-star")
    path = folder / "esd-star"
    with lock or contextlib.nullcontext():
        if not (path / MANIFEST).exists():
            result = erasure.erase("esd", toy_pipe, concept="star", preset="toy")
            result.save(path, base_model=toy_pipe)
    return apply_artifact(toy_pipe, path), path


@pytest.fixture(scope="session")
def toy_star_base_rates(toy_pipe, toy_judge, tmp_path_factory):
    """The toy model's judge rates on every object's prompts (8 seeds x 6 colours, 25 DDIM steps), sampled once.

    The ESD, SalUn and AdvUnlearn toy tests compare their erased models against these (``erasure_rates(before=)``),
    so the suite samples the base once instead of once per method (and once per run under xdist).
    """
    from eval.rates import concept_rates, toy_prompt_sets

    folder, lock = _shared_dir(tmp_path_factory, "toy-star-base-rates")
    path = folder / "rates.json"
    with lock or contextlib.nullcontext():
        if not path.exists():
            rates = concept_rates(toy_pipe, toy_prompt_sets("star"), toy_judge, seeds=8, num_inference_steps=25)
            path.write_text(json.dumps(rates["rates"]))
    return json.loads(path.read_text())
