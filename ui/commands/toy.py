"""``erasure-studio toy build | toy grid``: rebuild the bundled toy world, or draw a sample grid of a model."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .common import PROG, Parser, UsageError, default_device


def cmd_toy(argv: Sequence[str]) -> int:
    parser = Parser(prog=f"{PROG} toy", description="Build or inspect the bundled toy world.")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    build = sub.add_parser(
        "build", help="Train the toy world from scratch (about 4.5 h on 2 CPU cores; --stages picks parts)."
    )
    build.add_argument("--output_dir", default=None, help="Where to write (default: the package's toy assets).")
    build.add_argument(
        "--stages",
        default=None,
        help="Comma-separated stages (default: judge,judge_heldout,vae,sd,onestep,clip,gan; the gan is distilled from "
        "onestep; also gan_without:OBJECT).",
    )
    build.add_argument("--seed", type=int, default=0)
    grid = sub.add_parser("grid", help="Write a prompts x seeds sample grid of a model.")
    grid.add_argument("--model", default="toy")
    grid.add_argument("--output", default="toy-grid.png")
    grid.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(list(argv))
    if args.action == "build":
        from pipelines.sd import TOY_DIR
        from pipelines.toy.build import STAGES
        from pipelines.toy.build import build as run_build

        stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else STAGES
        bad = [s for s in stages if s not in STAGES and not s.startswith("gan_without:")]
        if bad:
            raise UsageError(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
        report = run_build(args.output_dir or TOY_DIR, stages=stages, seed=args.seed)
        print(json.dumps({stage: report[stage].get("seconds") for stage in stages}, indent=2))
        return 0

    from pipelines import open_model
    from pipelines.images import image_grid, to_pil
    from pipelines.sd import generate
    from pipelines.toy.world import COLOURS, OBJECTS, prompt_for

    pipe = open_model(args.model, device=default_device())
    prompts = [prompt_for(o, c) for o, c in zip(OBJECTS, COLOURS * 2)]
    flat = [p for p in prompts for _ in range(args.seeds)]
    seeds = [s for _ in prompts for s in range(args.seeds)]
    images = to_pil(generate(pipe, flat, seeds=seeds))
    rows = [images[i * args.seeds : (i + 1) * args.seeds] for i in range(len(prompts))]
    image_grid(rows, row_labels=prompts, col_labels=[f"seed {s}" for s in range(args.seeds)]).save(args.output)
    print(f"wrote {args.output}")
    return 0
