"""Text-to-Unlearn on the toy StyleGAN2: concepts erased by text alone, beside its baseline and Adapt-then-Unlearn.

For each concept (two objects and one colour by default) and each run (Text-to-Unlearn's directional objective, the
paper's CLIP-distance baseline, and Adapt-then-Unlearn's toy preset on the objects, for reference), on 1000 shared
latents judged by the held-out toy judge (``toy-heldout``: no run here trains against it), all read off one
``eval.gan_scorecard.gan_scorecard``:

- the concept's share of samples before and after, and its relative drop (the bar: >= 60 %);
- the largest shift of any other object or colour's share, in points (the bar: <= 10);
- kept: of the samples without the concept, the share that keep their top class on the concept's head (the paired
  count on shared latents, which sees samples trading places that the shares cannot), and the least kept value;
- FD-toy against the base generator (1000 samples each; the toy judge's features, which Text-to-Unlearn's perceptual
  term can hold, though its toy preset does not, and which Adapt-then-Unlearn's sorting reads);
- γ, the W1 distance between CLIP alignment distributions (the toy CLIP), in-domain (the training prompt) and
  out-of-domain (paraphrases the run never saw);
- wall seconds of the erasure.

Writes ``benchmarks/results/text_to_unlearn.json``. Run: ``python benchmarks/text_to_unlearn.py`` (about 22 minutes on
2 CPU cores); ``--concepts circle --runs directional`` for a subset, with ``--update`` to replace only those rows of
the existing file.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import gan
from erasure import erase
from eval.gan_scorecard import gan_scorecard
from pipelines.toy.world import COLOURS, OBJECTS, prompt_for, synonyms

OUT = Path(__file__).resolve().parent / "results" / "text_to_unlearn.json"
NUM_SAMPLES = 1000
BAR_DROP = 0.6
BAR_SHIFT = 0.10
RUNS = ("directional", "clip_distance", "adapt_then_unlearn")


def paraphrases(concept: str) -> list[str]:
    """Out-of-domain prompts: the concept's synonyms and templates that the training prompt does not use."""
    if concept in COLOURS:
        return [f"a {concept} shape", f"something {concept} on a background"]
    return [prompt_for(concept, word=word) for word in synonyms(concept)[1:]] + [f"a drawing of a {concept}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", nargs="+", default=["circle", "diamond", "red"])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(OUT))
    parser.add_argument("--gan", default="toy", help="the GAN to erase from: toy, or a bundle folder")
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-measure only the --concepts x --runs given and keep the output's other rows (e.g. after a preset "
        "change: --runs directional --update)",
    )
    args = parser.parse_args()

    bundle = gan.load(args.gan)
    runs = []
    for concept in args.concepts:
        if concept not in COLOURS and concept not in OBJECTS:
            raise SystemExit(f"{concept!r} is neither a toy object nor a colour")
        for run_name in args.runs:
            if run_name == "adapt_then_unlearn" and concept in COLOURS:
                continue  # the reference covers the objects
            start = time.perf_counter()
            if run_name == "adapt_then_unlearn":
                result = erase(run_name, bundle, concept=concept, preset="toy", seed=args.seed, eval_samples=0)
            else:
                result = erase(
                    "text_to_unlearn", bundle, concept=concept, preset="toy", seed=args.seed, objective=run_name,
                    eval_samples=0,
                )  # fmt: skip
            seconds = time.perf_counter() - start
            erased = bundle.with_generator(result.components["generator"])
            # Shared latents of seed 1 (not the run's seed), judged by the held-out judge.
            card = gan_scorecard(
                erased, bundle, concept, "toy-heldout", num_samples=NUM_SAMPLES, seed=1, fid_features="toy",
                clip="toy", prompts=[result.config.text_prompts[0] if run_name != "adapt_then_unlearn" else concept],
                paraphrases=paraphrases(concept),
            )  # fmt: skip
            forget, shares = card.forget_rate, card.rates["shares"]
            # The bar reads objects and colours (the scorecard's own worst_other also covers style and background).
            shifts = {
                f"{head}: {value}": shares[head]["erased"][value] - before
                for head in ("object", "colour")
                for value, before in shares[head]["base"].items()
                if value != concept
            }
            worst_name = max(shifts, key=lambda k: abs(shifts[k]))
            worst = {"name": worst_name, "shift": shifts[worst_name]}
            kept = card.rates["kept"]
            drop = card.rates["pul"] if card.rates["pul"] is not None else float("nan")
            run = {
                "concept": concept,
                "kind": card.kind,
                "run": run_name,
                "share_before": forget["base"],
                "share_after": forget["erased"],
                "relative_drop": drop,
                "worst_other": worst["name"],
                "worst_other_shift_points": round(100 * worst["shift"], 2),
                "meets_bar": bool(drop >= BAR_DROP and abs(worst["shift"]) <= BAR_SHIFT),
                "kept": kept["share"],
                "least_kept": kept["worst"]["name"],
                "least_kept_share": kept["worst"]["kept"],
                "kept_by_head": kept["by_head"],
                "commonest_changes": kept["changes"],
                "fd_toy_vs_base": card.distances["erased_vs_base"]["value"],
                "gamma_in_domain": card.gamma["in_domain"]["gamma"],
                "gamma_out_of_domain": card.gamma["out_of_domain"]["gamma"],
                "gamma_backbone": card.gamma["in_domain"]["backbone"],
                "paraphrases": paraphrases(concept),
                "seconds": round(seconds, 1),
                "shares_after": {h: t["erased"] for h, t in card.rates["shares"].items()},
            }
            brief = ("shares_after", "kept_by_head", "commonest_changes")
            print(json.dumps({k: v for k, v in run.items() if k not in brief}), flush=True)
            runs.append(run)

    if args.update and Path(args.output).exists():
        measured = {(run["concept"], run["run"]) for run in runs}
        kept = [
            run
            for run in json.loads(Path(args.output).read_text())["runs"]
            if (run["concept"], run["run"]) not in measured
        ]
        order = {concept: i for i, concept in enumerate(dict.fromkeys(r["concept"] for r in kept + runs))}
        runs = sorted(kept + runs, key=lambda r: (order[r["concept"]], RUNS.index(r["run"])))

    report = {
        "benchmark": "text_to_unlearn on the toy StyleGAN2",
        "gan": args.gan,
        "preset": "toy",
        "judge": "toy-heldout",
        "num_samples": NUM_SAMPLES,
        "bar": f"relative drop >= {BAR_DROP:.0%} and every other object or colour within {100 * BAR_SHIFT:.0f} points",
        "fd_features": f"FD-toy (toy judge penultimate features), {NUM_SAMPLES} samples per generator",
        "runs": runs,
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.output).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
