"""LoRA exports of toy erasures: size, and how well rank-r LoRAs keep the erasure (issue 27).

For ESD, SalUn and AdvUnlearn (toy presets) erasing "star" from the toy model, each artifact is exported as a LoRA
(``pipelines.export``, truncated SVD of the weight delta) at ranks 1, 4 and 16, loaded with diffusers'
``load_lora_weights`` onto a fresh toy model and scored with the toy judge, against the full artifact and the base:

- forget rate: the judge's "star" rate over 'a {colour} star' prompts (lower is better erased);
- retain shift: the worst change of another object's rate from the base model's (lower is better kept);
- LoRA size in bytes, the overall relative approximation error;
- the erasure-strength curve: forget rate and retain shift as the LoRA scale goes 0, 0.5, 1, 1.5
  (``pipe.set_adapters(["erasure"], adapter_weights=[scale])``) at every rank.

Rates use 'a {colour} {object}' prompts with seeds 0 .. seeds-1 and 25 DDIM steps (``eval.rates.concept_rates``).
Writes ``benchmarks/results/export_lora.json``.

Run: ``python benchmarks/export_lora.py [--seeds 4] [--artifacts DIR]``; ``--quick`` (1 seed, rank 1, scale 1, 2-step
erasures) only proves that the script runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "export_lora.json"
METHODS = ("esd", "salun", "advunlearn")
RANKS = (1, 4, 16)
SCALES = (0.0, 0.5, 1.0, 1.5)
STEPS = 25


def _scores(rates: dict[str, float], base: dict[str, float]) -> dict[str, float]:
    others = [k for k in rates if k != "star"]
    return {
        "forget_rate": rates["star"],
        "retain_shift": max(abs(rates[k] - base[k]) for k in others),
        "rates": rates,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="Seeds per prompt of the rates.")
    parser.add_argument("--artifacts", default=None, help="Folder of the toy artifacts (reused when present).")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--quick", action="store_true", help="1 seed, rank 1, scale 1, 2-step erasures: a smoke run.")
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args(argv)

    import torch

    import erasure
    from eval.judges import load_judge
    from eval.rates import concept_rates, toy_prompt_sets
    from pipelines.artifacts import MANIFEST, apply_artifact
    from pipelines.export import export
    from pipelines.sd import load_sd

    torch.manual_seed(0)
    seeds = 1 if args.quick else args.seeds
    ranks = (1,) if args.quick else RANKS
    scales = (1.0,) if args.quick else SCALES
    judge = load_judge("toy")
    sets = toy_prompt_sets("star")
    base = load_sd("toy")

    def rates_of(pipe) -> dict[str, float]:
        return concept_rates(pipe, sets, judge, seeds=seeds, num_inference_steps=STEPS)["rates"]

    scratch = Path(tempfile.mkdtemp(prefix="export-lora-"))
    artifacts = Path(args.artifacts) if args.artifacts else scratch / "artifacts"
    started = time.time()
    base_rates = rates_of(base)
    results: dict[str, dict] = {}
    for method in args.methods:
        path = artifacts / (f"{method}-star" + ("-quick" if args.quick else ""))
        t0 = time.time()
        if not (path / MANIFEST).exists():
            overrides = {"max_train_steps": 2} if args.quick else {}
            result = erasure.erase(method, base, concept="star", preset="toy", seed=0, **overrides)
            result.save(path, base_model=base, num_validation_images=0)
        erase_seconds = time.time() - t0
        full = _scores(rates_of(apply_artifact(base, path)), base_rates)
        entry: dict = {"artifact_path": str(path), "erase_seconds": erase_seconds, "artifact": full, "ranks": {}}
        entry["artifact_bytes"] = sum(p.stat().st_size for p in path.rglob("*.safetensors"))
        for rank in ranks:
            out = scratch / f"{method}-r{rank}"
            report = export(path, out, format="lora", rank=rank, base=base, overwrite=True)
            row = {
                "lora_bytes": report.bytes,
                "component": report.component,
                "layers": len(report.layers),
                "overall_error": report.overall_error,
                "uncovered_tensors": len(report.uncovered),
                "scales": {},
            }
            pipe = load_sd("toy")
            pipe.load_lora_weights(str(out), adapter_name="erasure")
            for scale in scales:
                pipe.set_adapters(["erasure"], adapter_weights=[scale])
                row["scales"][str(scale)] = _scores(rates_of(pipe), base_rates)
                print(method, rank, scale, row["scales"][str(scale)]["forget_rate"], flush=True)
            entry["ranks"][str(rank)] = row
        results[method] = entry

    record = {
        "benchmark": "export_lora",
        "concept": "star",
        "seeds": seeds,
        "num_inference_steps": STEPS,
        "ranks": list(ranks),
        "scales": list(scales),
        "quick": args.quick,
        "base": {"rates": base_rates},
        "methods": results,
        "wall_seconds": time.time() - started,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2))
    print(markdown_table(record))
    print(f"wrote {args.output}")


def markdown_table(record: dict) -> str:
    """The README table: per method and rank, LoRA size, error, and forget rate / retain shift at each scale."""
    scales = record["scales"]
    head = "| method | LoRA | size | rel. error | " + " | ".join(f"scale {s}: forget / retain shift" for s in scales)
    lines = [head + " |", "|---|---|---|---|" + "---|" * len(scales)]
    for method, entry in record["methods"].items():
        full = entry["artifact"]
        lines.append(
            f"| {method} | full artifact | {entry['artifact_bytes'] / 2**20:.2f} MiB | 0 | "
            + " | ".join(
                f"{full['forget_rate']:.2f} / {full['retain_shift']:.2f}" if float(s) == 1.0 else "" for s in scales
            )
            + " |"
        )
        for rank, row in entry["ranks"].items():
            cells = [
                f"{row['scales'][str(s)]['forget_rate']:.2f} / {row['scales'][str(s)]['retain_shift']:.2f}"
                for s in scales
            ]
            lines.append(
                f"| {method} | rank {rank} | {row['lora_bytes'] / 2**10:.0f} KiB | {row['overall_error']:.3f} | "
                + " | ".join(cells)
                + " |"
            )
    base = record["base"]["rates"]
    lines.append(f"\nBase model: star rate {base['star']:.2f}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
