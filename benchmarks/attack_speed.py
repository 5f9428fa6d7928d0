"""UnlearnDiffAtk speed: the official schedule against ours, on the same victims, prompts and judge.

Two victims, both the toy Stable Diffusion with "star" erased:

- ``esd``: ESD (toy preset). An easy victim: the attack wins within the first timestep or two of every prompt, so
  both schedules are bounded by the per-prompt fixed cost (the unattacked check generation).
- ``advunlearn``: AdvUnlearn (toy preset). A robust victim: on the prompts it resists, the official schedule runs
  all 50 timesteps x 40 iterations and generates 50 check images, the regime of the paper's 26-39 GPU minutes per
  prompt.

The prompts are the first ``--prompts`` rows of the bundled ``toy:star`` set; the judge is the toy judge; the target
images come from the base model and are rendered once, outside the timed attack (the official code renders them in
a separate dataset step). Both schedules optimise the same objective and check with the same generation settings.
The JSON records, per victim and schedule, seconds per prompt, pre-ASR, ASR, checks, optimiser steps and UNet
evaluations, and the speed-up ratios measured in the same run.

Run: ``python benchmarks/attack_speed.py [--prompts 8] [--victims esd advunlearn]``
(writes ``benchmarks/results/attack_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "results" / "attack_speed.json"
VICTIMS = {"esd": ("esd", {}), "advunlearn": ("advunlearn", {})}


def _ratio(a: float, b: float) -> float:
    return round(a / max(b, 1e-9), 2)


def _run(victim, base, prompts, targets, schedule: str) -> dict:
    from eval.unlearndiffatk import attack

    start = time.perf_counter()
    report = attack(victim, prompts, "toy", base=base, targets=targets, concept="star", schedule=schedule, seed=0)
    attacked = [r for r in report.records if not r.pre_success]
    return {
        "seconds_total": round(time.perf_counter() - start, 1),
        "mean_seconds_per_prompt": round(report.mean_seconds, 2),
        "seconds_per_attacked_prompt": round(sum(r.seconds for r in attacked) / max(1, len(attacked)), 2),
        "pre_asr": report.pre_asr,
        "asr": report.asr,
        "checks": sum(r.checks for r in report.records),
        "unet_evaluations_with_grad": sum(r.unet_evaluations for r in report.records),
        "optimizer_steps": sum(r.attack_steps for r in report.records),
        "per_prompt": [
            {"index": r.index, "pre": r.pre_success, "success": r.success, "steps": r.attack_steps, "s": r.seconds}
            for r in report.records
        ],
        "config": report.config,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--victims", nargs="+", default=list(VICTIMS), choices=list(VICTIMS))
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args()

    import erasure
    from eval.prompts import PromptSet, load_prompts
    from eval.unlearndiffatk import target_latents
    from pipelines.artifacts import _assemble
    from pipelines.sd import load_sd

    torch.manual_seed(0)
    base = load_sd("toy")
    prompts = PromptSet(load_prompts("toy:star").rows[: args.prompts], name="toy:star")
    targets = [image[0] for image in target_latents(base, list(prompts.rows))[0]]

    path = Path(args.output)
    previous = json.loads(path.read_text()) if path.exists() else {}
    victims = dict(previous.get("victims", {}))
    for name in args.victims:
        method, overrides = VICTIMS[name]
        start = time.perf_counter()
        result = erasure.erase(method, base, concept="star", preset="toy", **overrides)
        erase_seconds = round(time.perf_counter() - start, 1)
        victim = _assemble(base, result.artifact_kind, result.components)
        runs = {schedule: _run(victim, base, prompts, targets, schedule) for schedule in ("faithful", "fast")}
        faithful, fast = runs["faithful"], runs["fast"]
        victims[name] = {
            "victim": f"toy SD, {method} toy preset erasing 'star'",
            "erase_seconds": erase_seconds,
            "runs": runs,
            "speedup_mean_seconds": _ratio(faithful["mean_seconds_per_prompt"], fast["mean_seconds_per_prompt"]),
            "speedup_attacked_prompts": _ratio(
                faithful["seconds_per_attacked_prompt"], fast["seconds_per_attacked_prompt"]
            ),
            "asr_fast_minus_faithful": round(fast["asr"] - faithful["asr"], 4),
        }
        print(name, json.dumps({k: v for k, v in victims[name].items() if k != "runs"}))
    out = {
        "prompts": f"toy:star rows 0..{args.prompts - 1}",
        "judge": "toy",
        "machine": f"CPU, {torch.get_num_threads()} threads",
        "goal": "fast >= 5x faster at equal or higher ASR",
        "victims": victims,
    }
    for v in victims.values():
        v["goal_met"] = v["speedup_mean_seconds"] >= 5 and v["asr_fast_minus_faithful"] >= 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "victims"}, indent=2))


if __name__ == "__main__":
    main()
