"""``erasure-studio export ARTIFACT --format diffusers|single-file|lora --output PATH``: an erased model where people
use it: a merged diffusers folder, a single-file checkpoint (original SD layout) or a LoRA (``pipelines.export``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .common import PROG, Parser


def cmd_export(argv: Sequence[str]) -> int:
    parser = Parser(
        prog=f"{PROG} export",
        description="Export an artifact as a merged diffusers folder, a single-file checkpoint or a LoRA.",
    )
    parser.add_argument("artifact", help="The artifact folder (erasure.json).")
    parser.add_argument(
        "--format",
        required=True,
        choices=("diffusers", "single-file", "lora"),
        help="diffusers: a from_pretrained folder; single-file: one .safetensors in the original SD layout "
        "(from_single_file, ComfyUI, A1111); lora: the erasure's delta as a LoRA (load_lora_weights).",
    )
    parser.add_argument("--output", required=True, help="Output folder (diffusers, lora) or .safetensors file.")
    parser.add_argument("--base", default=None, help="Base model (default: the one the artifact names).")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="Dtype of the weights.")
    parser.add_argument("--rank", type=int, default=4, help="LoRA rank (truncated SVD per changed layer).")
    parser.add_argument(
        "--lora_layout",
        default="diffusers",
        choices=("diffusers", "kohya"),
        help="LoRA keys: diffusers (peft, load_lora_weights) or kohya (ComfyUI, A1111).",
    )
    parser.add_argument("--scorecard", default=None, help="A scorecard.json (erasure-studio eval) for the model card.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output path.")
    parser.add_argument("--allow_other_base", action="store_true", help="Apply the artifact to another base model.")
    args = parser.parse_args(list(argv))

    from pipelines.export import export

    # No progress bar: an export takes seconds to a minute, and bad input stays one line on stderr.
    report = export(
        args.artifact,
        args.output,
        format=args.format,
        base=args.base,
        dtype=args.dtype,
        rank=args.rank,
        lora_layout=args.lora_layout,
        overwrite=args.overwrite,
        allow_other_base=args.allow_other_base,
        scorecard=args.scorecard,
    )
    print(
        f"wrote {args.format} export of {report.method} ('{report.concept}') to {report.output} "
        f"({report.bytes / 2**20:.2f} MiB)"
    )
    if report.format == "lora":
        print(f"rank {report.rank}, {len(report.layers)} layers, overall relative error {report.overall_error:.4f}")
        worst = sorted(report.layers, key=lambda x: -x["relative_error"])[:5]
        print(json.dumps([{k: x[k] for k in ("name", "relative_error")} for x in worst], indent=1))
    return 0
