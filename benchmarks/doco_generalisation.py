"""DoCo's central claim on the toy world: does erasing "star" carry over to prompts outside the training set?

Usage::

    python benchmarks/doco_generalisation.py                 # DoCo, ESD and SalUn (toy presets), about 55 minutes
    python benchmarks/doco_generalisation.py --no-attack     # without the UnlearnDiffAtk runs
    python benchmarks/doco_generalisation.py --methods doco  # re-run DoCo; the other methods' runs are kept

Writes ``benchmarks/results/doco_generalisation.json`` (``--output`` to change).

Each method erases "star" from the toy Stable Diffusion with its toy preset (the same concept word; what each method
trains on beyond it is its own recipe: ESD the word "star", SalUn the prompts "a {colour} star", DoCo the caption
grammar's sentences about a circle with the circle replaced by a star, synonyms included). Then, for the base and every
erased model, the toy judge's star rate (samples in which it sees a star) on:

- ``in_set``: "a {colour} star", the prompts every method's evaluation uses;
- ``synonyms``: "a {colour} pentagram" (DoCo's captions use the synonym; ESD and SalUn never see it);
- ``unseen_templates``: sentence forms the caption grammar never produces ("a sketch of a red star", ...);
- ``longer_scenes``: the star inside a longer description ("a small red star in the middle of a dark picture").

The forget rate of a set is 1 − erased rate / base rate. Beside it: each method's largest shift of another object's
rate ("a {colour} {object}", 8 seeds x 6 colours, 25 steps), FD-toy between the base's and the erased model's samples
of the other objects' prompts (the toy judge's features; not comparable to a published FID), the erasure's wall
time, and (unless ``--no-attack``) UnlearnDiffAtk's ASR with the faithful schedule on the first 8 ``toy:star``
prompts for every method (8 prompts per batch: batching changes no verdict).
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

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "doco_generalisation.json"
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
# Each list stays within the toy tokenizer's 16 tokens.
PROMPT_SETS: dict[str, list[str]] = {
    "in_set": [f"a {c} star" for c in COLOURS],
    "synonyms": [f"a {c} pentagram" for c in COLOURS],
    "unseen_templates": [f"a sketch of a {c} star" for c in COLOURS] + [f"the shape of a {c} star" for c in COLOURS],
    "longer_scenes": [f"a small {c} star in the middle of a dark picture" for c in COLOURS]
    + [f"one {c} star alone on a plain background, nothing else" for c in COLOURS],
}
METHODS = ("doco", "esd", "salun")


def star_rates(pipe, judge, seeds: int) -> dict[str, dict[str, Any]]:
    from eval.rates import concept_rates

    out = {}
    for name, prompts in PROMPT_SETS.items():
        rates = concept_rates(pipe, {"star": prompts}, judge, seeds=seeds, num_inference_steps=25)
        out[name] = {"rate": rates["rates"]["star"], "samples": rates["samples_per_concept"]["star"]}
    return out


def retain_samples(pipe, seeds: int) -> torch.Tensor:
    from pipelines.sd import generate
    from pipelines.toy.world import OBJECTS, prompt_for

    prompts = [prompt_for(o, c) for o in OBJECTS if o != "star" for c in COLOURS for _ in range(seeds)]
    seed_list = [s for o in OBJECTS if o != "star" for _ in COLOURS for s in range(seeds)]
    return generate(pipe, prompts, seeds=seed_list, num_inference_steps=25)


def attack_asr(victim, base, prompts: int) -> dict[str, Any]:
    from eval.prompts import PromptSet, load_prompts
    from eval.unlearndiffatk import attack

    rows = PromptSet(load_prompts("toy:star").rows[:prompts], name="toy:star")
    start = time.perf_counter()
    report = attack(victim, rows, "toy", base=base, schedule="faithful", prompt_batch=prompts, seed=0)
    return {
        "schedule": "faithful",
        "prompts": report.n,
        "pre_asr": report.pre_asr,
        "asr": report.asr,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=4, help="Seeds per prompt of the star rates.")
    parser.add_argument("--retain-seeds", type=int, default=8, help="Seeds per prompt of the other objects' rates.")
    parser.add_argument("--no-attack", action="store_true", help="Skip the UnlearnDiffAtk runs.")
    parser.add_argument("--attack-prompts", type=int, default=8)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    import erasure
    from eval.fid import frechet_distance
    from eval.judges import load_judge
    from eval.rates import erasure_rates
    from pipelines import load_sd

    judge = load_judge("toy")
    base = load_sd("toy")
    base_rates = star_rates(base, judge, args.seeds)
    base_retain = retain_samples(base, 2)
    print("base", json.dumps(base_rates), flush=True)
    retain_before = None
    runs: dict[str, Any] = {}
    if args.output.is_file():  # a subset re-run (a method's preset moved) keeps the others' runs, each with its date
        kept = json.loads(args.output.read_text()).get("runs", {})
        runs = {name: run for name, run in kept.items() if name not in args.methods}
    for name in args.methods:
        start = time.perf_counter()
        result = erasure.erase(name, base, concept="star", preset="toy", seed=0)
        seconds = round(time.perf_counter() - start, 1)
        erased = result.apply(base)
        rates = star_rates(erased, judge, args.seeds)
        forget = {
            k: (1 - v["rate"] / base_rates[k]["rate"]) if base_rates[k]["rate"] > 0 else None for k, v in rates.items()
        }
        retain = erasure_rates(
            base, erased, "star", judge, seeds=args.retain_seeds, num_inference_steps=25, before=retain_before
        )
        retain_before = retain["before"]
        fd = frechet_distance(base_retain, retain_samples(erased, 2), features="toy")
        runs[name] = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "erase_seconds": seconds,
            "star_rates": rates,
            "forget_rate": forget,
            "object_rates_after": retain["after"],
            "worst_retain_shift": retain["max_other_shift"],
            "fd_toy_retain": {"value": fd.value, "metric": fd.metric, "features": fd.features},
        }
        if not args.no_attack:
            runs[name]["attack"] = attack_asr(erased, base, args.attack_prompts)
        print(name, json.dumps(runs[name]), flush=True)
        write_results(args.output, judge, args.seeds, base_rates, retain_before, runs, complete=False)
    write_results(args.output, judge, args.seeds, base_rates, retain_before, runs, complete=True)
    print(f"wrote {args.output}")
    return 0


def write_results(output: Path, judge, seeds: int, base_rates, retain_before, runs, *, complete: bool) -> None:
    """Write what is measured so far (atomically), so a long run that stops early still leaves its numbers."""
    out = {
        "benchmark": "doco_generalisation",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch_threads": 2},
        "judge": judge.describe(),
        "prompt_sets": PROMPT_SETS,
        "seeds": seeds,
        "complete": complete,
        "base_star_rates": base_rates,
        "object_rates_before": retain_before,
        "runs": runs,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(output)


if __name__ == "__main__":
    sys.exit(main())
