"""AdvUnlearn: speed, memory, and whether adversarial training buys robustness on the toy world.

Three parts, all written to ``benchmarks/results/advunlearn.json``:

1. ``speed`` (toy model): wall seconds per outer iteration of the official layout (UNet weight gradients kept, as
   the official code leaves ``requires_grad`` on) and of ours, faithful and fast; and for each, the ratio to the bare
   minimum: the number of UNet and text-encoder passes the schedule needs times the measured cost of one pass.
2. ``memory`` (the Stable Diffusion v1.4 architecture, random weights, fp32, CPU): peak RSS of two iterations in the
   official layout (two full models, UNet gradients kept) against ours, each in a fresh subprocess. Skipped with
   ``--skip-memory``.
3. ``robustness`` (toy model, concept "star"): UnlearnDiffAtk ASR and the no-attack rate of ESD (toy preset) and
   AdvUnlearn (toy preset, its faithful-schedule twin, and with the weaker inner attacker of the first toy preset)
   on the same prompts, next to each one's retain rates (the judge's rates on the other objects), for every erasure
   seed in ``--seeds``, with the mean and range over seeds.

Run: ``python benchmarks/advunlearn.py [--skip-memory] [--prompts 8] [--seeds 0 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from _timing import median_seconds

OUT = Path(__file__).resolve().parent / "results" / "advunlearn.json"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- 1. speed


def _pass_costs(pipe, batch: int = 1) -> dict[str, float]:
    """Median seconds of one UNet forward (batch 1, and the batch-2 call of a guided sampling step), UNet
    forward+backward to its input, text-encoder forward+backward."""
    from pipelines.sd import encode_prompts

    unet, te, tok = pipe.unet, pipe.text_encoder, pipe.tokenizer
    size = unet.config.sample_size
    x = torch.randn(batch, unet.config.in_channels, size, size)
    t = torch.full((batch,), 500)
    with torch.no_grad():
        cond = encode_prompts(tok, te, ["a red star"] * batch)

    def timed(fn, n=20):
        return median_seconds(fn, n)

    def unet_fwd():
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=cond)

    def unet_fwd_cfg():  # one guided sampling step: conditional and unconditional halves in one batch, as sampled
        with torch.no_grad():
            unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([cond, cond]))

    def unet_fwd_bwd():
        c = cond.clone().requires_grad_(True)
        unet(x, t, encoder_hidden_states=c).sample.mean().backward()

    def te_fwd_bwd():
        encode_prompts(tok, te, ["a red star"] * batch).mean().backward()

    unet.requires_grad_(False)
    te.requires_grad_(True)
    costs = {
        "unet_forward": timed(unet_fwd),
        "unet_forward_cfg_batch2": timed(unet_fwd_cfg),
        "unet_forward_backward": timed(unet_fwd_bwd),
        "text_encoder_forward_backward": timed(te_fwd_bwd),
    }
    te.requires_grad_(False)
    return costs


def _minimum_seconds(cfg, costs: dict[str, float], schedule: str) -> float:
    """Seconds of the passes one attacked outer iteration cannot avoid (expected DDIM steps (N-1)/2 per trajectory)."""
    steps = (cfg.num_inference_steps - 1) / 2
    trajectory = steps * costs["unet_forward_cfg_batch2"]  # CFG: one batch-2 UNet call per DDIM step
    grad_pass = costs["unet_forward_backward"] + costs["text_encoder_forward_backward"]
    trajectories = (cfg.attack_steps + 1) if schedule == "faithful" else 1
    attack = cfg.attack_steps * (costs["unet_forward"] + grad_pass)  # target ε_o, then ε through encoder and UNet
    defence = 2 * costs["unet_forward"] + grad_pass  # ε∅ and ε_c targets, then the trained prediction
    retain = trajectory + costs["unet_forward"] + grad_pass  # its own trajectory, target, prediction
    return trajectories * trajectory + attack + defence + retain


def speed(iterations: int = 4) -> dict:
    import erasure
    import erasure.advunlearn as advunlearn_module
    from pipelines.sd import load_sd

    pipe = load_sd("toy")
    costs = _pass_costs(pipe)
    out: dict = {"pass_seconds": costs}
    common = dict(concept="star", preset="toy", max_train_steps=iterations, warmup_steps=0)
    layouts = {
        "official_layout": ("faithful", True),
        "ours_faithful": ("faithful", False),
        "ours_fast": ("fast", False),
    }
    original_frozen_copy = advunlearn_module.frozen_copy
    for name, (schedule, keep_unet_grads) in layouts.items():
        if keep_unet_grads:
            # The official code leaves requires_grad on for the UNet: backward also fills its weight gradients.
            advunlearn_module.frozen_copy = lambda m, dtype=None: original_frozen_copy(m, dtype).requires_grad_(True)
        try:
            start = time.perf_counter()
            result = erasure.erase("advunlearn", pipe, schedule=schedule, **common)
            seconds = (time.perf_counter() - start) / iterations
        finally:
            advunlearn_module.frozen_copy = original_frozen_copy
        minimum = _minimum_seconds(result.config, costs, schedule)
        out[name] = {
            "seconds_per_iteration": round(seconds, 3),
            "bare_minimum_seconds": round(minimum, 3),
            "ratio_to_minimum": round(seconds / minimum, 2),
        }
        print(name, out[name])
    out["speedup_fast_vs_official"] = round(
        out["official_layout"]["seconds_per_iteration"] / out["ours_fast"]["seconds_per_iteration"], 2
    )
    out["speedup_faithful_vs_official"] = round(
        out["official_layout"]["seconds_per_iteration"] / out["ours_faithful"]["seconds_per_iteration"], 2
    )
    return out


# ---------------------------------------------------------------- 2. memory (subprocess per layout)

_SD14_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
)
_SD14_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


def _memory_child(layout: str) -> None:
    """Two AdvUnlearn iterations on the SD v1.4 architecture (random weights); prints peak RSS in MB."""
    import copy
    import resource

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    import erasure
    import erasure.advunlearn as advunlearn_module
    from pipelines.toy.models import SCHEDULER_CONFIG

    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(
        ROOT / "pipelines" / "toy" / "assets" / "sd" / "tokenizer", model_max_length=77
    )
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(block_out_channels=(8,), latent_channels=4, norm_num_groups=8),  # unused by the loop
        text_encoder=CLIPTextModel(CLIPTextConfig(**_SD14_TEXT)),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**_SD14_UNET),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    keep = []
    if layout == "official":
        # The official layout: a second full model (model_orig beside model) and UNet gradients kept.
        keep.append((copy.deepcopy(pipe.unet), copy.deepcopy(pipe.text_encoder)))
        original = advunlearn_module.frozen_copy
        advunlearn_module.frozen_copy = lambda m, dtype=None: original(m, dtype).requires_grad_(True)
    erasure.erase(
        "advunlearn",
        pipe,
        concept="nudity",
        max_train_steps=2,
        warmup_steps=0,
        attack_steps=1,
        retain_batch_size=1,
        num_inference_steps=2,
        retain_set="objects",
    )
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def memory() -> dict:
    out = {}
    for layout in ("official", "ours"):
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", layout],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=1800,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if line:
            out[layout] = json.loads(line[-1])
        elif proc.returncode == -signal.SIGKILL:
            total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
            out[layout] = {"error": f"killed (SIGKILL: out of memory with {total_mb:.0f} MB of RAM)"}
        else:
            out[layout] = {"error": f"exit code {proc.returncode}: {proc.stderr[-2000:]}"}
        print(layout, out[layout])
    if "peak_rss_mb" in out.get("official", {}) and "peak_rss_mb" in out.get("ours", {}):
        out["ratio_ours_to_official"] = round(out["ours"]["peak_rss_mb"] / out["official"]["peak_rss_mb"], 3)
    out["setting"] = "SD v1.4 UNet + CLIP ViT-L text encoder, random weights, fp32, CPU, 64x64 latents, 2 iterations"
    return out


# ---------------------------------------------------------------- 3. robustness


ROBUSTNESS_RUNS = {
    "esd": ("esd", {}),
    "advunlearn": ("advunlearn", {}),  # the toy preset: fast schedule, 3 prefix embeddings x 10 attack steps
    "advunlearn_faithful": ("advunlearn", {"schedule": "faithful"}),
    # The first toy preset's inner attacker (1 prefix embedding, 5 steps), much weaker than the evaluator.
    "advunlearn_k1_5steps": ("advunlearn", {"prefix_tokens": 1, "attack_steps": 5}),
}


def robustness(n_prompts: int, names: list[str], seeds: list[int], previous: dict | None = None) -> dict:
    """Per run and seed (the erasure's ``seed``), UnlearnDiffAtk's ASR and the no-attack rate on the same prompts,
    and the judge's rates on every object before and after; then the mean and range over seeds."""
    import erasure
    from eval.prompts import PromptSet, load_prompts
    from eval.rates import erasure_rates
    from eval.unlearndiffatk import attack, target_latents
    from pipelines.sd import load_sd

    base = load_sd("toy")
    prompts = PromptSet(load_prompts("toy:star").rows[:n_prompts], name="toy:star")
    targets = [image[0] for image in target_latents(base, list(prompts.rows))[0]]
    base_rates = None  # the base is sampled once; every erasure is compared against the same rates
    out = dict(previous or {})  # runs not asked for this time keep their earlier numbers
    out.update({"prompts": f"toy:star rows 0..{n_prompts - 1}", "judge": "toy", "attack": "unlearndiffatk, fast"})
    for name in names:
        method, overrides = ROBUSTNESS_RUNS[name]
        per_seed = {}
        for seed in seeds:
            start = time.perf_counter()
            result = erasure.erase(method, base, concept="star", preset="toy", seed=seed, **overrides)
            seconds = time.perf_counter() - start
            erased = result.apply(base)
            rates = erasure_rates(base, erased, "star", "toy", seeds=8, num_inference_steps=25, before=base_rates)
            base_rates = rates["before"]
            common = dict(base=base, targets=targets, concept="star", seed=0)
            no_attack = attack(erased, prompts, "toy", method="none", **common)
            attacked = attack(erased, prompts, "toy", **common)
            per_seed[str(seed)] = {
                "erase_seconds": round(seconds, 1),
                "no_attack_asr": no_attack.asr,
                "asr": attacked.asr,
                "star_rate_before": rates["before"]["star"],
                "star_rate_after": rates["after"]["star"],
                "retain_rates_before": {k: v for k, v in rates["before"].items() if k != "star"},
                "retain_rates_after": {k: v for k, v in rates["after"].items() if k != "star"},
                "max_retain_shift": rates["max_other_shift"],
                "mean_retain_shift": rates["mean_other_shift"],
            }
            print(name, seed, per_seed[str(seed)], flush=True)
        summary = {}
        for key in ("erase_seconds", "no_attack_asr", "asr", "star_rate_after", "max_retain_shift"):
            values = [run[key] for run in per_seed.values()]
            summary[key] = {"mean": round(sum(values) / len(values), 4), "min": min(values), "max": max(values)}
        out[name] = {"method": method, "overrides": overrides, "seeds": per_seed, "summary": summary}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-robustness", action="store_true")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Erasure seeds of the robustness part.")
    parser.add_argument(
        "--robustness_runs", nargs="+", default=list(ROBUSTNESS_RUNS), choices=list(ROBUSTNESS_RUNS),
        help="Which erasures the robustness part attacks (the others keep their numbers from the existing JSON).",
    )  # fmt: skip
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(OUT))
    args = parser.parse_args()
    if args.memory_child:
        _memory_child(args.memory_child)
        return
    path = Path(args.output)
    report = json.loads(path.read_text()) if path.exists() else {}
    if not args.skip_speed:
        report["speed"] = speed()
    if not args.skip_memory:
        report["memory"] = memory()
    if not args.skip_robustness:
        report["robustness"] = robustness(args.prompts, args.robustness_runs, args.seeds, report.get("robustness"))
    report["machine"] = f"CPU, {torch.get_num_threads()} threads"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
