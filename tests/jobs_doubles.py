"""Runners for the batch-study tests (``tests/test_jobs.py``): module-level, so that every executor's workers can
import them (spawned processes, submitit jobs and Ray workers get this process's ``sys.path``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def numbers_runner(run, workdir: Path, context) -> dict:
    """Deterministic numbers from the run's seed and concept, computed with torch (so thread counts matter as they
    do for real runs), with progress steps. It waits while ``$JOBS_STALL_FILE`` exists and names this run's concept
    (the crash test kills the study then), and raises for the concept named by ``$JOBS_FAIL_CONCEPT``."""
    stall = os.environ.get("JOBS_STALL_FILE")
    for step in range(1, 4):
        context.progress(step, 3, {"stage": "erase", "loss": 1.0 / step})
    if os.environ.get("JOBS_FAIL_CONCEPT") == run.concept:
        raise ValueError(f"cannot erase {run.concept!r} here\nsecond line that the log must not show")
    (workdir / "artifact").mkdir()
    (workdir / "artifact" / "weights.txt").write_text(run.hash)
    while stall and Path(stall).exists() and Path(stall).read_text().strip() == run.concept:
        time.sleep(0.05)
    generator = torch.Generator().manual_seed(1000 * run.seed + sum(map(ord, run.concept)))
    x = torch.randn(256, 256, generator=generator)
    y = (x @ x.T / 256).softmax(-1)
    forget = float(torch.rand(1, generator=generator))
    return {
        "artifact": f"runs/{run.name}/artifact",
        "metrics": {
            "pre-ASR": forget / 2,
            "ASR": forget,
            "FID": float(y.std()) * 100,
            "CLIP": float(y.max()),
            "UA": 1 - forget,
            "IRA": 0.9,
            "CRA": None,
            "forget": forget,
            "retain shift": float(y.min()) * 100,
        },
        "backends": {"ASR": "test double", "FID": "test double features"},
        "threads": torch.get_num_threads(),
    }
