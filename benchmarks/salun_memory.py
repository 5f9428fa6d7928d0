"""SalUn's cost: the saliency mask on the toy model, and one masked training step on the SD v1.4 UNet architecture.

Usage::

    python benchmarks/salun_memory.py            # both parts, a few minutes on a CPU; see the memory note below
    python benchmarks/salun_memory.py --quick    # the mask part only (seconds)

Writes ``benchmarks/results/salun_memory.json`` (``--output`` to change).

1. **Mask**: ``erasure.salun.compute_saliency_mask`` (gradient pass over 48 forget latents at batch 8, the toy
   preset's set, then the top-50 % selection) on the toy Stable Diffusion, or on the tiny random pipeline when the
   toy weights are not built. The latents are random: the cost does not depend on what the images show.
2. **SD v1.4 step**: one masked SalUn training step (the random-label forget term at batch 1, the retain term at
   batch 1, masking, Adam, restoring the entries outside the mask) on ``UNet2DConditionModel`` with SD v1.4's
   config (written out below, random weights, fp32, 64x64 latents, 77x768 text conditioning), with and without
   gradient checkpointing, and with checkpointing plus bitsandbytes' 8-bit Adam (SalUn's ``use_8bit_adam``; run
   when bitsandbytes is installed, which works on the CPU since 0.45). The mask is a random half of every tensor:
   what it selects does not change the memory.

Every measurement runs in a fresh Python process, so each peak resident set (``ru_maxrss``) belongs to that
measurement alone; ratios compare runs of the same invocation (compare ratios, not absolute numbers, across
machines). Memory note: without checkpointing a full-UNet step holds weights, gradients, Adam's two moments, the mask
and the restored entries (about 16 GB) plus activations; a run that the kernel kills is recorded as an error.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "salun_memory.json"

# CompVis/stable-diffusion-v1-4, unet/config.json (diffusers UNet2DConditionModel, 859.5M parameters).
SD_V1_4_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD_TEXT_TOKENS, SD_TEXT_DIM = 77, 768


# ---------------------------------------------------------------- measuring inside a worker


def current_rss_mb() -> float:
    """The process's resident set now."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """The process's peak resident set so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def worker_mask(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from erasure.salun import compute_saliency_mask, default_prompts, salun_unet_parameters, top_fraction_mask
    from pipelines.sd import TOY_DIR, encode_prompts, fresh_scheduler, trainable_copy

    torch.manual_seed(0)
    if (TOY_DIR / "sd" / "model_index.json").exists():
        from pipelines.sd import load_sd

        pipe, model = load_sd("toy"), "toy"
    else:
        from pipelines.tiny import tiny_sd

        pipe, model = tiny_sd(0), "tiny (toy weights not built)"
    unet = trainable_copy(pipe.unet)
    selected = salun_unet_parameters(unet, "full")
    for p in selected.values():
        p.requires_grad_(True)
    size = unet.config.sample_size
    latents = torch.randn(args.mask_images, unet.config.in_channels, size, size)
    prompts = default_prompts("star", "toy").forget
    with torch.no_grad():
        conds = encode_prompts(
            pipe.tokenizer, pipe.text_encoder, [prompts[i % len(prompts)] for i in range(len(latents))]
        )
        uncond = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""])
    rss_before = current_rss_mb()

    start = time.perf_counter()
    masks = compute_saliency_mask(
        unet,
        selected,
        latents,
        conds,
        uncond,
        fresh_scheduler(pipe),
        fraction=0.5,
        guidance=7.5,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
    )
    mask_seconds = time.perf_counter() - start
    # The selection alone, on scores of the same sizes (the weights' magnitudes).
    start = time.perf_counter()
    top_fraction_mask({n: p.detach().abs() for n, p in selected.items()}, 0.5)
    selection_seconds = time.perf_counter() - start
    entries = sum(p.numel() for p in selected.values())
    return {
        "model": model,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "ranked_entries": entries,
        "kept_fraction": sum(int(m.sum()) for m in masks.values()) / entries,
        "forget_images": args.mask_images,
        "batch_size": 8,
        "mask_seconds": round(mask_seconds, 3),
        "selection_seconds": round(selection_seconds, 3),
        "rss_before_mask_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def worker_sd_step(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from erasure import make_config
    from erasure.salun import (
        frozen_entries,
        make_optimizer,
        mask_gradients,
        random_label_loss,
        restore_frozen_entries,
        salun_unet_parameters,
    )
    from pipelines.sd import diffusion_loss
    from pipelines.toy.models import SCHEDULER_CONFIG  # SD v1.x's noise schedule

    torch.manual_seed(0)
    start = time.perf_counter()
    unet = UNet2DConditionModel(**SD_V1_4_UNET_CONFIG).train().requires_grad_(False)
    build_seconds = time.perf_counter() - start
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    selected = salun_unet_parameters(unet, args.train_method)
    generator = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=generator) < 0.5 for n, p in selected.items()}
    for p in selected.values():
        p.requires_grad_(True)
    frozen = frozen_entries(selected, masks)
    optimizer = make_optimizer(
        list(selected.values()), make_config("salun", concept="x", learning_rate=1e-5, use_8bit_adam=args.adam8bit)
    )
    scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
    latents = torch.randn(1, 4, 64, 64, generator=generator)
    retain_latents = torch.randn(1, 4, 64, 64, generator=generator)
    forget_cond, replacement_cond, retain_cond = torch.randn(3, 1, SD_TEXT_TOKENS, SD_TEXT_DIM, generator=generator)
    rss_before = current_rss_mb()

    # One step, as SalUn.erase runs it.
    start = time.perf_counter()
    t = torch.randint(0, 1000, (1,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    x_t = scheduler.add_noise(latents, noise, t)
    forget_loss = random_label_loss(unet, x_t, t, forget_cond, replacement_cond)
    forget_loss.backward()
    retain_loss = diffusion_loss(unet, scheduler, retain_latents, retain_cond, generator)
    (0.1 * retain_loss).backward()
    mask_gradients(selected, masks)
    optimizer.step()
    restore_frozen_entries(selected, masks, frozen)
    step_seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "optimizer": type(optimizer).__name__,
        "train_method": args.train_method,
        "unet_parameters": sum(p.numel() for p in unet.parameters()),
        "trained_parameters": sum(p.numel() for p in selected.values()),
        "restored_entries": sum(v.numel() for v in frozen.values()),
        "build_seconds": round(build_seconds, 2),
        "step_seconds": round(step_seconds, 2),
        "rss_before_step_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        "step_peak_increase_mb": round(peak - rss_before, 1),
        "losses": {"forget": forget_loss.item(), "retain": retain_loss.item()},
    }


# ---------------------------------------------------------------- the driver


def run_worker(name: str, extra: list[str], timeout: float) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON (or the error)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit status {done.returncode}"
        return {"error": reason, "stderr_tail": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Skip the SD v1.4 part (the mask part only).")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="Where to write the JSON.")
    parser.add_argument("--train_method", default="full", choices=["full", "xattn"], help="SD v1.4 step: tensors.")
    parser.add_argument("--mask_images", type=int, default=48, help="Forget latents in the mask pass.")
    parser.add_argument("--timeout", type=float, default=900, help="Seconds per measurement before giving up.")
    parser.add_argument("--worker", choices=["mask", "sd-step"], help=argparse.SUPPRESS)
    parser.add_argument("--gradient_checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--adam8bit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "mask":
        print(json.dumps(worker_mask(args)))
        return 0
    if args.worker == "sd-step":
        print(json.dumps(worker_sd_step(args)))
        return 0

    results: dict[str, Any] = {
        "benchmark": "salun_memory",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "peak_memory_kind": "process peak RSS (ru_maxrss), each measurement in a fresh process",
    }
    print("mask on the toy model ...", flush=True)
    results["mask"] = run_worker("mask", ["--mask_images", str(args.mask_images)], args.timeout)
    print(json.dumps(results["mask"], indent=2), flush=True)

    if args.quick:
        results["sd_v1_4_step"] = {"skipped": "--quick"}
    else:
        runs = {}
        variants = [("gradient_checkpointing", 1, 0), ("no_checkpointing", 0, 0)]
        if importlib.util.find_spec("bitsandbytes") is not None:
            variants.append(("gradient_checkpointing_adam8bit", 1, 1))
        else:
            runs["gradient_checkpointing_adam8bit"] = {"skipped": "bitsandbytes is not installed"}
        for label, checkpointing, adam8bit in variants:
            print(f"SD v1.4 UNet, one masked step, {label} ...", flush=True)
            extra = ["--gradient_checkpointing", str(checkpointing), "--adam8bit", str(adam8bit)]
            runs[label] = run_worker("sd-step", [*extra, "--train_method", args.train_method], args.timeout)
            print(json.dumps(runs[label], indent=2), flush=True)
        reference, checkpointed = runs["no_checkpointing"], runs["gradient_checkpointing"]
        ratios = {}
        if "error" not in reference and "error" not in checkpointed:
            for key in ("peak_rss_mb", "step_peak_increase_mb", "step_seconds"):
                ratios[key] = round(checkpointed[key] / reference[key], 3)
        low = runs["gradient_checkpointing_adam8bit"]
        ratios_8bit = {}
        if "error" not in reference and "peak_rss_mb" in low:
            ratios_8bit = {key: round(low[key] / reference[key], 3) for key in ("peak_rss_mb", "step_seconds")}
        results["sd_v1_4_step"] = {
            "unet_config": SD_V1_4_UNET_CONFIG,
            "batch": {"forget": 1, "retain": 1, "latents": [4, 64, 64], "text": [SD_TEXT_TOKENS, SD_TEXT_DIM]},
            "mask": "a random half of every selected tensor (what it selects does not change the memory)",
            "optimizer": "torch.optim.Adam, lr 1e-5 (bitsandbytes.optim.Adam8bit in the adam8bit run)",
            "runs": runs,
            "gradient_checkpointing_vs_no_checkpointing": ratios or {"skipped": "a run failed"},
            "checkpointing_and_adam8bit_vs_no_checkpointing": ratios_8bit or {"skipped": "a run failed or skipped"},
        }

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
