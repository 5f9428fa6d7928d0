"""Two CPU processes under ``accelerate launch``: AdvUnlearn trains data-parallel, and the attack shards its prompts
and merges them into one report. (``--multi_gpu`` is what makes accelerate start two processes on CPU; ``--cpu``
silently starts one, see ENVIRONMENT.md.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _launch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "ui.cli",
        *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_advunlearn_and_attack_with_two_processes(tiny_folder, tmp_path):
    artifact = tmp_path / "advunlearn"
    proc = _launch(
        [
            "erase",
            "advunlearn",
            "--concept",
            "star",
            "--pretrained_model_name_or_path",
            str(tiny_folder),
            "--max_train_steps",
            "2",
            "--warmup_steps",
            "1",
            "--attack_steps",
            "1",
            "--retain_set",
            "toy",
            "--retain_batch_size",
            "2",
            "--num_inference_steps",
            "3",
            "--output_dir",
            str(artifact),
            "--eval_judge",
            "none",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((artifact / "erasure.json").read_text())
    assert manifest["metrics"]["processes"] == 2

    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "prompt,evaluation_seed,evaluation_guidance,concept\n"
        + "".join(f"a red star {i},{i},3.0,star\n" for i in range(4))
    )
    out = tmp_path / "attack"
    proc = _launch(
        [
            "attack",
            str(artifact),
            "--prompts",
            str(prompts),
            "--judge",
            "toy",
            "--num_timesteps",
            "2",
            "--iterations_per_timestep",
            "1",
            "--num_inference_steps",
            "3",
            "--prompt_batch",
            "2",
            "--output_dir",
            str(out),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["n_prompts"] == 4
    shards = {p.name: len(p.read_text().splitlines()) for p in out.glob("records.rank*.jsonl")}
    assert shards == {"records.rank0.jsonl": 2, "records.rank1.jsonl": 2}
