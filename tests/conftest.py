"""Test setup: offline, seeded, quiet. Fixtures give the toy world's pipeline and a tiny random one."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(scope="session")
def esd_star(tmp_path_factory, toy_pipe):
    """ESD (toy preset) erasing "star" from the toy model, run once per session and saved as an artifact.

    Returns ``(result, erased_pipeline, artifact_path)``; several slow tests share it (ESD's own effect, the attack's
    central finding, the scorecard), so the suite pays for one erasure.
    """
    import erasure
    from pipelines.artifacts import apply_artifact

    result = erasure.erase("esd", toy_pipe, concept="star", preset="toy")
    path = result.save(tmp_path_factory.mktemp("artifacts") / "esd-star", base_model=toy_pipe)
    return result, apply_artifact(toy_pipe, path), path


@pytest.fixture(scope="session")
def toy_star_base_rates(toy_pipe, toy_judge):
    """The toy model's judge rates on every object's prompts (8 seeds x 6 colours, 25 DDIM steps), sampled once.

    The ESD, SalUn and AdvUnlearn toy tests compare their erased models against these (``erasure_rates(before=)``),
    so the suite samples the base once instead of once per method.
    """
    from eval.rates import concept_rates, toy_prompt_sets

    return concept_rates(toy_pipe, toy_prompt_sets("star"), toy_judge, seeds=8, num_inference_steps=25)["rates"]
