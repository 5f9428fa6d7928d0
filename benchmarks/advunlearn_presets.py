"""The AdvUnlearn toy-preset search: every candidate against ESD, seed by seed, from finished studies.

    erasure-studio run configs/jobs/toy-leaderboard.yaml --output_dir study-leaderboard/
    erasure-studio run configs/jobs/advunlearn-preset-search.yaml --output_dir study-advunlearn-search/
    python benchmarks/advunlearn_presets.py --studies study-leaderboard/ study-advunlearn-search/

Reads the studies' ``results.jsonl`` (nothing is re-run) and writes ``benchmarks/results/advunlearn_presets.json``:
for each AdvUnlearn candidate (a leaderboard label, e.g. ``advunlearn (toy)`` or ``advunlearn (layer 0)``), its
config overrides, and per concept and erasure seed its ASR beside ESD's at the same concept and seed, its pre-ASR,
forget rate and retain shift, the torch threads it ran with, and whether it passes: **ASR below ESD's at every seed
and concept, and no other object moved by more than 10 points**. Runs still missing are listed, so a partial search
says what it has not measured yet instead of passing or failing on what it has.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.jobs import RESULTS_FILE, read_jsonl  # noqa: E402

RETAIN_TOLERANCE = 0.10
OUT = Path(__file__).resolve().parent / "results" / "advunlearn_presets.json"


def _label(record: dict) -> str:
    return record.get("label") or record["method"]


def summarise(records: list[dict], planned: dict[str, list[tuple[str, int]]] | None = None) -> dict:
    """Group AdvUnlearn runs by label and compare each with ESD's run at the same concept and seed."""
    esd = {(r["concept"], r["seed"]): r for r in records if r["method"] == "esd"}
    candidates: dict[str, dict] = {}
    for record in sorted(records, key=lambda r: (_label(r), r["concept"], r["seed"])):
        if record["method"] != "advunlearn":
            continue
        entry = candidates.setdefault(
            _label(record), {"overrides": record.get("overrides", {}), "runs": [], "missing": []}
        )
        metrics = record.get("metrics", {})
        reference = esd.get((record["concept"], record["seed"]))
        asr, esd_asr = metrics.get("ASR"), (reference or {}).get("metrics", {}).get("ASR")
        shift = metrics.get("retain shift")
        below = None if asr is None or esd_asr is None else asr < esd_asr
        kept = None if shift is None else shift <= RETAIN_TOLERANCE
        entry["runs"].append(
            {
                "concept": record["concept"],
                "seed": record["seed"],
                "torch_threads": (record.get("hardware") or {}).get("torch_threads"),
                "pre-ASR": metrics.get("pre-ASR"),
                "ASR": asr,
                "esd ASR": esd_asr,
                "forget": metrics.get("forget"),
                "retain shift": shift,
                "erase seconds": (record.get("erase") or {}).get("wall_seconds"),
                "asr below esd": below,
                "others kept": kept,
            }
        )
    for label, entry in candidates.items():
        done = {(run["concept"], run["seed"]) for run in entry["runs"]}
        entry["missing"] = [f"{c} seed {s}" for c, s in (planned or {}).get(label, []) if (c, s) not in done]
        checks = [(run["asr below esd"], run["others kept"]) for run in entry["runs"]]
        if entry["missing"] or any(None in pair for pair in checks):
            entry["passes"] = None  # not fully measured
        else:
            entry["passes"] = all(below and kept for below, kept in checks)
        asrs = [run["ASR"] for run in entry["runs"] if run["ASR"] is not None]
        shifts = [run["retain shift"] for run in entry["runs"] if run["retain shift"] is not None]
        entry["summary"] = {
            "ASR": {"min": min(asrs), "max": max(asrs)} if asrs else None,
            "retain shift": {"min": min(shifts), "max": max(shifts)} if shifts else None,
            "seeds below esd": sum(1 for run in entry["runs"] if run["asr below esd"]),
            "runs": len(entry["runs"]),
        }
    return candidates


def _planned(study: Path) -> dict[str, list[tuple[str, int]]]:
    """Every AdvUnlearn (label -> (concept, seed)) point a study's job file plans."""
    from pipelines.jobs import expand_runs, load_spec

    spec_file = study / "study.json"
    if not spec_file.is_file():
        return {}
    spec = load_spec(json.loads(spec_file.read_text())["spec"])
    planned: dict[str, list[tuple[str, int]]] = {}
    for run in expand_runs(spec):
        if run.method == "advunlearn":
            planned.setdefault(run.label, []).append((run.concept, run.seed))
    return planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", nargs="+", required=True, help="Study folders (erasure-studio run --output_dir).")
    parser.add_argument("--out", default=str(OUT), help="Where the JSON goes.")
    args = parser.parse_args()
    records, planned = [], {}
    for folder in map(Path, args.studies):
        if not (folder / RESULTS_FILE).is_file():
            raise SystemExit(f"{folder} holds no {RESULTS_FILE}; run the study first (erasure-studio run ...)")
        records += read_jsonl(folder / RESULTS_FILE)
        planned.update(_planned(folder))
    payload = {
        "benchmark": "advunlearn_presets",
        "rule": "ASR below ESD's at every seed and concept, no other object moved by more than 10 points",
        "studies": [str(Path(s)) for s in args.studies],
        "candidates": summarise(records, planned),
    }
    out = Path(args.out)
    temp = out.with_suffix(".tmp")
    temp.write_text(json.dumps(payload, indent=1) + "\n")
    temp.replace(out)
    for label, entry in payload["candidates"].items():
        print(f"{label}: passes={entry['passes']} {json.dumps(entry['summary'])} missing={entry['missing']}")


if __name__ == "__main__":
    main()
