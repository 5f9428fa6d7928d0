"""What a GAN erasure does to the samples that never showed the concept: one picture, the same latents in every row.

Reads two finished runs of the toy leaderboard's GAN block (``erasure-studio run configs/jobs/toy-leaderboard-gan.yaml
--output_dir study-leaderboard-gan/``), by default Adapt-then-Unlearn and Text-to-Unlearn erasing "circle" at seed 0,
and draws the base generator and both erased ones on the first shared latents (the scorecard's seed 0) whose base
sample is not the concept. Each column is labelled with the base sample's object and each erased row with the run's
``kept`` (its scorecard: of the 1000 shared latents' samples without the concept, the share that keep their object by
``toy-heldout``), so the picture shows what that number counts.

Writes ``docs/toy-gan-shared-latents.png``. Run:
``python benchmarks/gan_shared_latents.py --study study-leaderboard-gan/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gan
from eval.judges import load_judge
from pipelines.artifacts import apply_artifact
from pipelines.images import image_grid, to_pil

OUT = Path(__file__).resolve().parent.parent / "docs" / "toy-gan-shared-latents.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="the GAN block's study folder")
    parser.add_argument("--concept", default="circle")
    parser.add_argument("--seed", type=int, default=0, help="the erasure seed of the runs to draw")
    parser.add_argument("--methods", nargs="+", default=["adapt_then_unlearn", "text_to_unlearn"])
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args()

    bundle = gan.load("toy")
    judge = load_judge("toy-heldout")
    names = judge.heads["object"]
    pool = 200  # enough latents to find --columns samples without the concept
    base_images = bundle.sample(pool, seed=0)
    base_objects = [names[i] for i in judge.probabilities(base_images)["object"].argmax(1).tolist()]
    keep = [i for i, name in enumerate(base_objects) if name != args.concept][: args.columns]
    rows, labels = [to_pil(base_images[keep])], ["base"]
    # Runs of an earlier plan (a preset changed since) stay in runs/; the leaderboard lists them as stale.
    board = Path(args.study, "leaderboard.json")
    stale = set(json.loads(board.read_text()).get("stale", [])) if board.exists() else set()
    for method in args.methods:
        pattern = f"{method.replace('_', '-')}-{args.concept}-seed{args.seed}-*/scorecard/scorecard.json"
        runs = [card.parent.parent for card in sorted(Path(args.study, "runs").glob(pattern))]
        runs = [run for run in runs if run.name not in stale]
        if len(runs) != 1:
            found = "no finished" if not runs else f"{len(runs)} current"
            raise SystemExit(
                f"{found} {method} runs for {args.concept!r} at seed {args.seed} in {args.study}; run "
                "`erasure-studio report` on the study to list its stale runs"
            )
        (run,) = runs
        erased = apply_artifact(bundle, run / "artifact")
        images = erased.sample(pool, seed=0)
        kept = json.loads((run / "scorecard" / "scorecard.json").read_text())["rates"]["kept"]["share"]
        rows.append(to_pil(images[keep]))
        labels.append(f"{method} ({kept:.0%} kept)")
    grid = image_grid(
        rows,
        row_labels=labels,
        col_labels=[base_objects[i] for i in keep],
        title=f"'{args.concept}' erased, seed {args.seed}: the same latents; columns are samples that were not "
        f"{args.concept}s",
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.output).with_suffix(".tmp.png")
    grid.save(tmp)
    tmp.replace(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
