"""Do the toy presets hold? Each method's forget rate, retain shift and ASR across seeds, concepts, torch thread
counts and objects outside the leaderboard, from finished studies.

    erasure-studio run configs/jobs/toy-leaderboard.yaml --output_dir study-leaderboard/
    erasure-studio run configs/jobs/toy-leaderboard.yaml --output_dir study-leaderboard-1thread/ --torch_threads 1
    erasure-studio run configs/jobs/toy-carryover.yaml --output_dir study-carryover/
    python benchmarks/preset_robustness.py --studies study-leaderboard/ study-leaderboard-1thread/ \
        --carryover study-carryover/

After a preset change for one method, re-run its runs in studies cut with ``--methods`` and update only its entry::

    erasure-studio run configs/jobs/toy-leaderboard.yaml --methods sfd --output_dir study-leaderboard-sfd/
    python benchmarks/preset_robustness.py --studies study-leaderboard-sfd/ --update

Reads the studies' ``results.jsonl`` (nothing is re-run), keeping only the runs that today's presets plan (each
study's job re-planned from its ``study.json``: a run of an earlier preset value has another hash and is left out),
and writes ``benchmarks/results/preset_robustness.json``: per method (its leaderboard label), every run (study, role,
concept, seed, torch threads, forget, retain shift, pre-ASR, ASR), per metric the range, the change between thread
counts at the same concept and seed, and a verdict against the stated spreads (issue 26's "robust preset"):

- **forget rate**: the range over seeds, concepts, thread counts and the carry-over objects is at most 25 points
  (the preset erases the objects it was not tuned on as well as the ones it was);
- **retain shift**: at most 10 points in every run, carry-over included (no run damages another object more);
- **ASR**: the range over the leaderboard's runs (seeds, both concepts, thread counts) is at most 25 points. The
  issue asks the attack's result to hold across seeds, concepts and thread counts, and the preset to *erase* other
  objects; how often the attack recovers a different object is reported beside it (``ASR, every object``), not
  barred.

A method with fewer than two runs of a metric is "not measured" for it; the verdict is **holds** only when every
metric holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.study import validate_study  # noqa: E402
from pipelines.jobs import RESULTS_FILE, STUDY_FILE, read_jsonl  # noqa: E402

SPREAD_BARS = {"forget": 0.25, "ASR": 0.25}
RETAIN_BAR = 0.10
OUT = Path(__file__).resolve().parent / "results" / "preset_robustness.json"


def summarise(studies: dict[str, list[dict]], carryover: set[str] = frozenset()) -> dict[str, dict]:
    """Per method label: its runs across the studies, the spreads, the thread deltas and the verdicts.

    Args:
        studies: per study name, its records (``results.jsonl`` lines).
        carryover: the names of the studies on objects outside the leaderboard (their ASR is reported, not barred).
    """
    methods: dict[str, dict] = {}
    for study, records in studies.items():
        for record in sorted(records, key=lambda r: (r["concept"], r["seed"])):
            metrics = record.get("metrics", {})
            entry = methods.setdefault(record.get("label") or record["method"], {"runs": []})
            entry["runs"].append(
                {
                    "study": study,
                    "role": "carry-over" if study in carryover else "leaderboard",
                    "concept": record["concept"],
                    "seed": record["seed"],
                    "torch_threads": (record.get("hardware") or {}).get("torch_threads"),
                    "forget": metrics.get("forget"),
                    "retain shift": metrics.get("retain shift"),
                    "pre-ASR": metrics.get("pre-ASR"),
                    "ASR": metrics.get("ASR"),
                }
            )
    for entry in methods.values():
        runs = entry["runs"]
        verdicts = {}
        spreads = {}
        for metric, bar in SPREAD_BARS.items():
            barred = runs if metric == "forget" else [r for r in runs if r["role"] == "leaderboard"]
            values = [r[metric] for r in barred if r[metric] is not None]
            if len(values) < 2:
                verdicts[metric] = "not measured"
                continue
            spreads[metric] = {"min": min(values), "max": max(values), "range": max(values) - min(values)}
            verdicts[metric] = "holds" if spreads[metric]["range"] <= bar + 1e-9 else "does not hold"
        every_asr = [r["ASR"] for r in runs if r["ASR"] is not None]
        if len(every_asr) >= 2:
            spreads["ASR, every object"] = {"min": min(every_asr), "max": max(every_asr)}
            spreads["ASR, every object"]["range"] = max(every_asr) - min(every_asr)
        shifts = [r["retain shift"] for r in runs if r["retain shift"] is not None]
        if shifts:
            spreads["retain shift"] = {"min": min(shifts), "max": max(shifts), "range": max(shifts) - min(shifts)}
            verdicts["retain shift"] = "holds" if max(shifts) <= RETAIN_BAR + 1e-9 else "does not hold"
        else:
            verdicts["retain shift"] = "not measured"
        entry["spreads"] = spreads
        entry["thread_deltas"] = _thread_deltas(runs)
        entry["verdicts"] = verdicts
        measured = [v for v in verdicts.values() if v != "not measured"]
        if not measured:
            entry["verdict"] = "not measured"
        elif all(v == "holds" for v in measured):
            entry["verdict"] = "holds" if len(measured) == len(verdicts) else "holds so far"
        else:
            entry["verdict"] = "does not hold"
    return methods


def current_records(folder: Path) -> list[dict]:
    """The study's records whose config today's presets still resolve to (the job re-planned from ``study.json``)."""
    _, runs = validate_study(json.loads((folder / STUDY_FILE).read_text())["spec"])
    planned = {run.hash for run in runs}
    records = read_jsonl(folder / RESULTS_FILE)
    stale = [r["run"] for r in records if r["hash"] not in planned]
    if stale:
        print(f"{folder}: {len(stale)} runs of an earlier config left out ({', '.join(stale)})")
    return [r for r in records if r["hash"] in planned]


def updated_report(previous: dict, report: dict) -> dict:
    """``previous`` with the methods of ``report`` replaced: the other methods' entries stay as they were, and the
    study lists keep the earlier studies only where a kept method's runs came from them."""
    kept = {label: entry for label, entry in previous["methods"].items() if label not in report["methods"]}
    kept_studies = {run["study"] for entry in kept.values() for run in entry["runs"]}
    return {
        **report,
        "studies": [s for s in previous["studies"] if s in kept_studies] + report["studies"],
        "carryover": [s for s in previous["carryover"] if s in kept_studies] + report["carryover"],
        "methods": {**kept, **report["methods"]},
    }


def _thread_deltas(runs: list[dict]) -> list[dict]:
    """For each (concept, seed) run at two thread counts: how much each metric moved."""
    by_key: dict[tuple[str, int], dict[int, dict]] = {}
    for run in runs:
        if run["torch_threads"] is not None:
            by_key.setdefault((run["concept"], run["seed"]), {})[run["torch_threads"]] = run
    deltas = []
    for (concept, seed), by_threads in sorted(by_key.items()):
        if len(by_threads) < 2:
            continue
        low, high = min(by_threads), max(by_threads)
        delta = {"concept": concept, "seed": seed, "threads": [low, high]}
        for metric in ("forget", "retain shift", "ASR"):
            a, b = by_threads[low][metric], by_threads[high][metric]
            delta[metric] = None if a is None or b is None else b - a
        deltas.append(delta)
    return deltas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--studies", nargs="+", required=True, help="The leaderboard's study folders (each with results.jsonl)."
    )
    parser.add_argument(
        "--carryover", nargs="*", default=[], help="Study folders on objects outside the leaderboard (carry-over)."
    )
    parser.add_argument("--output", default=str(OUT))
    parser.add_argument(
        "--update",
        action="store_true",
        help="Replace only the methods these studies hold in the existing output; the other methods' entries (and "
        "their studies) stay as they were (a preset re-run for one method, in a study cut with --methods).",
    )
    args = parser.parse_args()
    studies = {}
    for folder in [*args.studies, *args.carryover]:
        if not (Path(folder) / RESULTS_FILE).is_file() or not (Path(folder) / STUDY_FILE).is_file():
            raise SystemExit(f"{folder} has no {RESULTS_FILE} or {STUDY_FILE}: run the study there first")
        studies[Path(folder).name] = current_records(Path(folder))
    report = {
        "bars": {
            "forget range <= (every run, carry-over included)": SPREAD_BARS["forget"],
            "ASR range <= (the leaderboard's runs)": SPREAD_BARS["ASR"],
            "retain shift <= (every run)": RETAIN_BAR,
        },
        "studies": list(studies),
        "carryover": [Path(folder).name for folder in args.carryover],
        "methods": summarise(studies, {Path(folder).name for folder in args.carryover}),
    }
    out = Path(args.output)
    if args.update and out.is_file():
        report = updated_report(json.loads(out.read_text()), report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)
    for label, entry in report["methods"].items():
        print(f"{label}: {entry['verdict']} {entry['verdicts']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
