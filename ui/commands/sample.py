"""``erasure-studio sample MODEL_OR_ARTIFACT --prompt ... --seed ...``: images and a prompts x seeds grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .common import PROG, Parser, UsageError, default_device


def cmd_sample(argv: Sequence[str]) -> int:
    parser = Parser(prog=f"{PROG} sample", description="Generate images from a model or an artifact folder.")
    parser.add_argument("model", help="'toy', a model folder/file/hub id, or an artifact folder (erasure.json).")
    parser.add_argument("--prompt", nargs="+", required=True, help="One or more prompts.")
    parser.add_argument("--seed", nargs="+", type=int, default=[0], help="One or more seeds.")
    parser.add_argument("--base", default=None, help="Base model of an artifact (default: the one it names).")
    parser.add_argument("--output_dir", default="samples", help="Folder for the PNGs and grid.png.")
    parser.add_argument("--num_inference_steps", type=int, default=None)
    parser.add_argument("--guidance_scale", type=float, default=None)
    parser.add_argument("--allow_other_base", action="store_true", help="Apply an artifact to another base model.")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(list(argv))
    if any(not p.strip() for p in args.prompt):
        raise UsageError("--prompt got an empty prompt; give each prompt some text")
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        raise UsageError(f"--num_inference_steps must be at least 1, got {args.num_inference_steps}")
    if args.guidance_scale is not None and not math.isfinite(args.guidance_scale):
        raise UsageError(f"--guidance_scale must be a finite number, got {args.guidance_scale}")

    from pipelines import open_model
    from pipelines.data import slugify
    from pipelines.images import image_grid, to_pil
    from pipelines.sd import generate

    device = args.device or default_device()
    pipe = open_model(args.model, base=args.base, device=device, allow_other_base=args.allow_other_base)
    prompts = [p for p in args.prompt for _ in args.seed]
    seeds = [s for _ in args.prompt for s in args.seed]
    images = to_pil(
        generate(
            pipe,
            prompts,
            seeds=seeds,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
        )
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, (p, s, im) in enumerate(zip(prompts, seeds, images)):
        im.save(out / f"{i:03d}-{slugify(p, limit=40)}-s{s}.png")
    n = len(args.seed)
    rows = [images[i * n : (i + 1) * n] for i in range(len(args.prompt))]
    image_grid(rows, row_labels=args.prompt, col_labels=[f"seed {s}" for s in args.seed]).save(out / "grid.png")
    print(f"wrote {len(images)} images and grid.png to {out}")
    return 0
