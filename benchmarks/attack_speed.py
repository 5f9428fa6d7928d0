"""UnlearnDiffAtk speed: the official schedule against ours, on the same victim, prompts and judge.

The victim is the toy Stable Diffusion with "star" erased by ESD (toy preset); the prompts are the first ``--prompts``
rows of the bundled ``toy:star`` set; the judge is the toy judge. Both schedules optimise the same objective and check
with the same generation settings; the JSON records seconds per prompt, ASR, pre-ASR, checks and UNet evaluations for
each, and the speed-up ratio measured in the same run.

Run: ``python benchmarks/attack_speed.py [--prompts 8]`` (writes ``benchmarks/results/attack_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results" / "attack_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args()

    import erasure
    from eval.prompts import PromptSet, load_prompts
    from eval.unlearndiffatk import attack
    from pipelines.artifacts import _assemble
    from pipelines.sd import load_sd

    torch.manual_seed(0)
    base = load_sd("toy")
    result = erasure.erase("esd", base, concept="star", preset="toy")
    victim = _assemble(base, result.artifact_kind, result.components)
    prompts = PromptSet(load_prompts("toy:star").rows[: args.prompts], name="toy:star")

    runs = {}
    for schedule in ("faithful", "fast"):
        start = time.perf_counter()
        report = attack(victim, prompts, "toy", base=base, concept="star", schedule=schedule, seed=0)
        runs[schedule] = {
            "seconds_total": round(time.perf_counter() - start, 1),
            "mean_seconds_per_prompt": round(report.mean_seconds, 2),
            "seconds_per_attacked_prompt": round(
                sum(r.seconds for r in report.records if not r.pre_success)
                / max(1, sum(not r.pre_success for r in report.records)),
                2,
            ),
            "pre_asr": report.pre_asr,
            "asr": report.asr,
            "checks": sum(r.checks for r in report.records),
            "unet_evaluations_with_grad": sum(r.unet_evaluations for r in report.records),
            "optimizer_steps": sum(r.attack_steps for r in report.records),
            "config": report.config,
        }
        print(schedule, json.dumps({k: v for k, v in runs[schedule].items() if k != "config"}))
    out = {
        "victim": "toy SD, ESD toy preset erasing 'star'",
        "prompts": f"toy:star rows 0..{args.prompts - 1}",
        "judge": "toy",
        "machine": f"CPU, {torch.get_num_threads()} threads",
        "runs": runs,
        "speedup_mean_seconds": round(
            runs["faithful"]["mean_seconds_per_prompt"] / max(runs["fast"]["mean_seconds_per_prompt"], 1e-9), 2
        ),
        "asr_fast_minus_faithful": runs["fast"]["asr"] - runs["faithful"]["asr"],
        "goal": "fast >= 5x faster at equal or higher ASR",
    }
    out["goal_met"] = out["speedup_mean_seconds"] >= 5 and out["asr_fast_minus_faithful"] >= 0
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
