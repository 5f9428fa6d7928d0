"""SFD on the toy world: the shipped one-step generator, SFD forgetting "star", a control, and one-step speed.

Usage::

    python benchmarks/sfd.py                  # about 10 minutes on 2 CPU cores

Writes ``benchmarks/results/sfd.json`` (``--output`` to change).

Four models, each judged by the toy judge on "a {colour} {object}" for every object (8 seeds x 6 colours):

- ``teacher``: the toy SD with its evaluation sampler (25 DDIM steps, CFG 7.5);
- ``one_step``: the shipped one-step generator (``toy build --stages onestep``), the start of SFD on the toy world;
- ``sfd``: SFD forgetting "star" with the toy preset (from ``one_step``);
- ``control``: the same steps and seed with the forget weight λ_g,f set to 0, so that the forget term, not drift,
  is what removes the concept.

Beside the rates: FD-toy of each model's samples of the other objects against the teacher's (the toy judge's
features; not comparable to a published FID), the wall time of the distillation (from the build report) and of the
forgetting stage, and images per second of one-step sampling against the teacher's default sampler (the diffusers
pipeline's 50 steps with CFG), at the same batch size, measured in this run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._timing import median_seconds  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "sfd.json"


def retain_samples(pipe, seeds: int) -> torch.Tensor:
    """Samples of every object but the star, every colour, ``seeds`` seeds (25 steps for a multi-step model)."""
    from pipelines.sd import generate
    from pipelines.toy.world import COLOURS, OBJECTS, prompt_for

    rows = [(prompt_for(o, c), s) for o in OBJECTS if o != "star" for c in COLOURS for s in range(seeds)]
    return generate(pipe, [p for p, _ in rows], seeds=[s for _, s in rows], num_inference_steps=25)


def images_per_second(pipe, batch_size: int, repeats: int) -> float:
    prompts = ["a red circle"] * batch_size

    def sample():
        pipe(prompts, generator=[torch.Generator().manual_seed(i) for i in range(batch_size)], output_type="pt")

    return batch_size / median_seconds(sample, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="Seeds per prompt of the rates (x 6 colours).")
    parser.add_argument("--fd-seeds", type=int, default=4, help="Seeds per prompt of the FD samples (x 42 prompts).")
    parser.add_argument("--batch-size", type=int, default=16, help="Batch of the speed comparison.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats of the speed comparison (median).")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    import erasure
    from eval.fid import frechet_distance
    from eval.judges import load_judge
    from eval.rates import concept_rates, toy_prompt_sets
    from pipelines import load_sd
    from pipelines.one_step import load_one_step
    from pipelines.sd import TOY_DIR

    judge = load_judge("toy")
    teacher = load_sd("toy")
    one_step = load_one_step("toy")
    prompt_sets = toy_prompt_sets("star")
    teacher_retain = retain_samples(teacher, args.fd_seeds)

    models: dict[str, Any] = {"teacher": teacher, "one_step": one_step}
    runs: dict[str, dict[str, Any]] = {}
    for name, overrides in (("sfd", {}), ("control", {"forget_weight": 0.0})):
        start = time.perf_counter()
        result = erasure.erase("sfd", teacher, concept="star", preset="toy", seed=0, **overrides)
        runs[name] = {"forgetting_seconds": round(time.perf_counter() - start, 1), "config": result.config.to_dict()}
        models[name] = result.apply(teacher)
    for name, pipe in models.items():
        rates = concept_rates(pipe, prompt_sets, judge, seeds=args.seeds, num_inference_steps=25)["rates"]
        fd = frechet_distance(teacher_retain, retain_samples(pipe, args.fd_seeds), features="toy")
        runs.setdefault(name, {}).update({"object_rates": rates, "fd_toy_vs_teacher_others": round(fd.value, 3)})
        print(name, json.dumps(runs[name]["object_rates"]), "FD", runs[name]["fd_toy_vs_teacher_others"], flush=True)

    start_rates = runs["one_step"]["object_rates"]
    shifts = {o: round(runs["sfd"]["object_rates"][o] - start_rates[o], 4) for o in start_rates if o != "star"}
    teacher_shifts = {
        o: round(runs["sfd"]["object_rates"][o] - runs["teacher"]["object_rates"][o], 4) for o in start_rates
    }
    speed = {
        "batch_size": args.batch_size,
        "teacher_sampler": "the pipeline's default: 50 DDIM steps, CFG 7.5",
        "teacher_images_per_second": round(images_per_second(teacher, args.batch_size, args.repeats), 2),
        "one_step_images_per_second": round(images_per_second(one_step, args.batch_size, args.repeats), 2),
    }
    speed["speedup"] = round(speed["one_step_images_per_second"] / speed["teacher_images_per_second"], 1)
    build = json.loads((TOY_DIR / "build_report.json").read_text()).get("onestep", {})
    out = {
        "benchmark": "sfd",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch_threads": 2},
        "judge": judge.describe(),
        "samples_per_object": 6 * args.seeds,
        "runs": runs,
        "sfd_star_rate": runs["sfd"]["object_rates"]["star"],
        "control_star_rate": runs["control"]["object_rates"]["star"],
        "sfd_other_object_shift_vs_one_step": shifts,
        "sfd_object_shift_vs_teacher": teacher_shifts,
        "distillation_seconds": build.get("seconds"),
        "distillation_recipe": {k: build.get(k) for k in ("pairs_seconds", "regression_seconds", "sid_seconds")},
        "speed": speed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.output)
    print(json.dumps({k: out[k] for k in ("sfd_star_rate", "control_star_rate", "speed")}, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
