"""One DoCo step on the Stable Diffusion v1.4 architecture (random weights, fp32, CPU): seconds and peak memory.

Usage::

    python benchmarks/doco_sd14_step.py     # about 5 minutes on 2 CPU cores, about 20 GB of memory at the peak

Writes ``benchmarks/results/doco_sd14_step.json`` (``--output`` to change).

The pipeline is SD v1.4's architecture (UNet 859.5M, CLIP ViT-L/14 text encoder, the SD VAE; 64x64 latents, 77
tokens) with random weights and the real CLIP tokenizer (the toy world's copy of its files, at 77 tokens), so the
cost is the real one; a random network draws nothing, which does not change what a step costs. Each variant runs
``erasure.erase("doco", ...)`` in a fresh process (so the peak resident set belongs to it) for ``--steps`` generator
steps at batch 1 with no warm-up, from one anchor image drawn with one sampler step, and reports the median seconds
per step (from the progress callback's timestamps) and ``ru_maxrss``: with the concept-preserving gradient (two
backward passes, one through the adversarial loss and one through the prior loss) and without it (one backward pass
of the summed loss).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.salun_memory import SD_V1_4_UNET_CONFIG  # noqa: E402

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "doco_sd14_step.json"


def sd14_random_pipeline():
    """SD v1.4's architecture with random weights (fp32) and the real CLIP tokenizer."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from pipelines.sd import toy_path

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD_V1_4_UNET_CONFIG)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, vocab_size=49408
        )
    )
    # The real CLIP vocabulary and merges (shipped with the toy world), at SD's 77-token context.
    tokenizer = CLIPTokenizer.from_pretrained(toy_path("sd") / "tokenizer", model_max_length=77)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.studio_source = {"name_or_path": "sd-v1-4-architecture-random", "revision": None}
    return pipe


def worker(surgery: str, steps: int) -> dict[str, Any]:
    import torch

    import erasure

    torch.set_num_threads(2)
    pipe = sd14_random_pipeline()
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        erasure.erase(
            "doco",
            pipe,
            concept="parachute",
            anchor="airplane",
            max_train_steps=steps,
            warmup_steps=0,
            batch_size=1,
            num_anchor_images=1,
            anchor_inference_steps=1,
            gradient_surgery=surgery,
            prior_preservation=True,
            cache_dir=cache,
            callback=lambda step, total, logs: stamps.append(time.perf_counter()),
        )
        total = time.perf_counter() - start
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    return {
        "gradient_surgery": surgery,
        "steps": steps,
        "seconds_per_step_median": round(statistics.median(per_step), 2) if per_step else None,
        "seconds_first_step_and_setup": round(stamps[0] - start, 2) if stamps else None,
        "seconds_total": round(total, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="Generator steps per variant (the first is not timed).")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", choices=["doco", "none"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return 0
    runs = []
    for surgery in ("doco", "none"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", surgery, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if out.returncode != 0:
            runs.append({"gradient_surgery": surgery, "error": out.stderr.strip().splitlines()[-1:]})
        else:
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    ok = {r["gradient_surgery"]: r for r in runs if "error" not in r}
    result = {
        "benchmark": "doco_sd14_step",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "model": "SD v1.4 architecture, random weights, fp32, CPU, batch 1, 64x64 latents, 77 tokens",
        "runs": runs,
        "surgery_over_plain_seconds": (
            round(ok["doco"]["seconds_per_step_median"] / ok["none"]["seconds_per_step_median"], 2)
            if len(ok) == 2
            else None
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
