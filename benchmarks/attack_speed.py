"""UnlearnDiffAtk speed: today's default (the faithful schedule with every exact lever) against the reference.

The reference is the official schedule as this studio ran it before the levers: one prompt at a time, a check
generation at every timestep, the one-hot x embedding product, the sort-based simplex projection
(``prompt_batch=1, reuse_checks=False, embedding_lookup=False, projection="sort"``). The default is
``AttackConfig()``: the same faithful schedule with checks of an already-checked discrete prompt reused, the
embedding product as a row lookup, the simplex projection by pivoting, and 8 prompts per batch on a CPU. None of
these may change a result: per prompt, the same pre-attack verdict, success, optimiser steps and timestep of
success (``identical_outcomes``).

Two victims, both the toy Stable Diffusion with "star" erased by a toy preset: ``esd`` (easy: most prompts fall
within a few timesteps) and ``advunlearn`` (robust: on the prompts it resists the attack runs all 50 timesteps x 40
iterations and 50 checks, the regime of the paper's 26-39 GPU minutes per prompt). Prompts: the first ``--prompts``
rows of ``toy:star``; judge: the toy judge; target images rendered once by the base model, outside the timings.

Also measured, on the base model (the weights do not change the cost), ``step_costs``: what one optimiser step
costs, piece by piece (simplex projection, token sampling, embedding product with its backward, text encoder and
UNet forward and backward, Adam), with the reference's pieces and the default's, per prompt at the default's
prompt batch; and a check generation. ``breakdown`` combines them with each run's counts (steps, generations) into
seconds per prompt by piece, drawn as a stacked bar chart in ``docs/attack_speed_breakdown.png``.

Run: ``python benchmarks/attack_speed.py [--prompts 8] [--victims esd advunlearn]``
(writes ``benchmarks/results/attack_speed.json``; about 45 minutes on 2 CPU cores, most of it the reference on the
robust victim).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _timing import median_seconds

OUT = Path(__file__).resolve().parent / "results" / "attack_speed.json"
CHART = Path(__file__).resolve().parents[1] / "docs" / "attack_speed_breakdown.png"
VICTIMS = ("esd", "advunlearn")
REFERENCE = {"prompt_batch": 1, "reuse_checks": False, "embedding_lookup": False, "projection": "sort"}
PIECES = ("projection", "sampling", "embedding", "text_encoder", "unet", "optimizer", "checks", "other")


def _ratio(a: float, b: float) -> float:
    return round(a / max(b, 1e-9), 2)


def _run(victim, base, prompts, targets, options: dict) -> dict:
    from eval.unlearndiffatk import AttackConfig, attack

    start = time.perf_counter()
    report = attack(victim, prompts, "toy", base=base, targets=targets, concept="star", seed=0, **options)
    seconds = time.perf_counter() - start
    timesteps = AttackConfig().sampled_timesteps()
    iterations = AttackConfig().iterations_per_timestep

    def timestep_of_success(r) -> int | None:
        if not r.success or r.pre_success:
            return None
        return timesteps[r.attack_steps // iterations - 1]

    return {
        "seconds_total": round(seconds, 1),
        "seconds_per_prompt": round(seconds / report.n, 2),
        "pre_asr": report.pre_asr,
        "asr": report.asr,
        "optimizer_steps": sum(r.attack_steps for r in report.records),
        "checks": sum(r.checks for r in report.records),
        "checks_reused": sum(r.checks_reused for r in report.records),
        "generations": sum(r.checks - r.checks_reused for r in report.records),
        "per_prompt": [
            {
                "index": r.index,
                "pre": r.pre_success,
                "success": r.success,
                "steps": r.attack_steps,
                "timestep_of_success": timestep_of_success(r),
                "adversarial_ids": r.adversarial_ids,
                "checks": r.checks,
                "checks_reused": r.checks_reused,
                "s": round(r.seconds, 2),
            }
            for r in report.records
        ],
        "config": report.config,
    }


def step_costs(base, prompts, targets, max_batch: int, repeats: int = 30) -> dict:
    """Seconds of each piece of one optimiser step, the reference's way and the default's way: per prompt for the
    pieces over the vocabulary (simplex projection, token sampling, embedding product or lookup with its backward,
    Adam), per call of ``b`` prompts for the batched ones (text encoder and UNet forward and backward, a check
    generation with its judge), for ``b`` = 1 .. ``max_batch``."""
    from eval.judges import load_judge
    from eval.unlearndiffatk import (
        AttackConfig,
        UnlearnDiffAtk,
        encode_image,
        project_to_simplex,
        project_to_simplex_sorted,
        sample_embeddings,
        sample_one_hot,
    )
    from pipelines.sd import encode_embeddings

    runner = UnlearnDiffAtk(base, load_judge("toy"), AttackConfig(num_inference_steps=None))
    row = prompts.rows[0]
    x0 = encode_image(base, targets[0][None])
    prompt_ids = runner._prompt_ids(row.prompt)
    weight = runner.embedding_matrix
    vocab = weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    # P as it is a few hundred steps in: near uniform, with Adam's perturbations.
    probs = project_to_simplex_sorted(
        torch.full((3, vocab), 1 / vocab) + 1e-3 * torch.randn(3, vocab, generator=generator)
    ).requires_grad_(True)
    optimizer = torch.optim.Adam([probs], lr=0.01, weight_decay=0.1)
    with torch.no_grad():
        prompt_embeds = runner.text_encoder.embeddings.token_embedding(prompt_ids)
    upstream = torch.randn(3, weight.shape[1], generator=generator)

    def seconds(fn, n: int = repeats) -> float:
        return median_seconds(fn, n)

    def product() -> None:
        probs.grad = None
        ((sample_one_hot(probs, generator).to(weight.dtype) @ weight) * upstream).sum().backward()

    def lookup() -> None:
        probs.grad = None
        (sample_embeddings(probs, weight, generator) * upstream).sum().backward()

    def spliced(batch: int) -> torch.Tensor:
        adv = weight[:3][None].expand(batch, -1, -1).clone().requires_grad_(True)
        length = prompt_embeds.shape[1]
        rest = prompt_embeds[:, 1 : length - 3].expand(batch, -1, -1)
        return torch.cat([prompt_embeds[:, :1].expand(batch, -1, -1), adv, rest], 1)

    def text_encoder(batch: int) -> None:
        encode_embeddings(runner.text_encoder, spliced(batch)).sum().backward()

    def unet(batch: int) -> None:
        cond = encode_embeddings(runner.text_encoder, spliced(batch)).detach().requires_grad_(True)
        noisy = x0.expand(batch, -1, -1, -1)
        t = torch.full((batch,), 500)
        runner.unet(noisy, t, encoder_hidden_states=cond).sample.pow(2).mean().backward()

    def adam() -> None:
        probs.grad = torch.randn_like(probs)
        optimizer.step()

    with torch.no_grad():
        p = probs.detach().clone()
    sampling = seconds(lambda: torch.multinomial(p.float().clamp_min(0) + 1e-12, 1, generator=generator))
    shared = {"sampling": sampling, "optimizer": seconds(adam)}
    batches = range(1, max_batch + 1)
    return {
        "per_prompt_pieces": {
            "reference": {
                **shared,
                "projection": seconds(lambda: project_to_simplex_sorted(p)),
                "embedding": seconds(product) - sampling,
            },
            "default": {
                **shared,
                "projection": seconds(lambda: project_to_simplex(p)),
                "embedding": max(0.0, seconds(lookup) - sampling),
            },
        },
        "per_call_by_batch": {
            "text_encoder": {str(b): seconds(lambda b=b: text_encoder(b), 10) for b in batches},
            "unet": {str(b): seconds(lambda b=b: unet(b), 10) for b in batches},
            "check": {
                str(b): seconds(lambda b=b: runner.check_many([(prompt_ids, row, "star")] * b), 3) for b in batches
            },
        },
        "notes": (
            "seconds; 'embedding' is the one-hot product or the lookup with its backward, less the sampling inside "
            "it; 'check' is one sampling call of b prompts (the toy SD's default steps, guidance) and its judge"
        ),
    }


def call_sizes(run: dict) -> tuple[list[int], list[int]]:
    """The prompts in each optimiser-step call and each check-generation call of a run, rebuilt from its records.

    With ``prompt_batch`` p the prompts run in chunks of p; within a chunk, step j serves every prompt that took at
    least j steps, and the checks after each timestep serve the prompts still running then (less the checks served
    from the cache, taken off the largest calls); the pre-attack checks are one call per chunk."""
    batch = run["config"]["prompt_batch"]
    iterations = run["config"]["iterations_per_timestep"]
    prompts = run["per_prompt"]
    steps, checks = [], []
    for first in range(0, len(prompts), batch):
        chunk = prompts[first : first + batch]
        checks.append(len(chunk))
        longest = max(p["steps"] for p in chunk)
        steps += [sum(p["steps"] >= j for p in chunk) for j in range(1, longest + 1)]
        checks += [sum(p["steps"] >= j for p in chunk) for j in range(iterations, longest + 1, iterations)]
    reused = sum(p["checks_reused"] for p in prompts)
    for _ in range(reused):
        largest = max(range(len(checks)), key=checks.__getitem__)
        checks[largest] -= 1
    return steps, [c for c in checks if c > 0]


def breakdown(run: dict, costs: dict, which: str) -> dict:
    """Seconds per prompt of a run, by piece: the per-prompt pieces times the prompt's steps, each batched call's cost
    at its batch size (:func:`call_sizes`) shared among its prompts; what the measured wall time leaves over is
    'other' (Python, autograd bookkeeping, noise draws, the target latents' encoding)."""
    n = len(run["per_prompt"])
    steps, checks = call_sizes(run)
    per_call = costs["per_call_by_batch"]
    out = {k: run["optimizer_steps"] * v / n for k, v in costs["per_prompt_pieces"][which].items()}
    for piece in ("text_encoder", "unet"):
        out[piece] = sum(per_call[piece][str(b)] for b in steps) / n
    out["checks"] = sum(per_call["check"][str(b)] for b in checks) / n
    out["other"] = max(0.0, run["seconds_per_prompt"] - sum(out.values()))
    return {k: round(out[k], 2) for k in PIECES}


def lever_savings(victim: dict, costs: dict) -> dict:
    """Seconds per prompt each lever saved, in the order they were added (from the breakdown's piece costs and the
    runs' counts), and the modelled speed-up after each, cumulatively."""
    reference, default = victim["runs"]["reference"], victim["runs"]["default"]
    n = len(reference["per_prompt"])
    steps = reference["optimizer_steps"] / n
    pieces = costs["per_prompt_pieces"]
    saved = {
        "reuse_checks": default["checks_reused"] / n * costs["per_call_by_batch"]["check"]["1"],
        "embedding_lookup": steps * (pieces["reference"]["embedding"] - pieces["default"]["embedding"]),
        "projection_pivot": steps * (pieces["reference"]["projection"] - pieces["default"]["projection"]),
    }
    before, after = victim["breakdown"]["reference"], victim["breakdown"]["default"]
    batched = sum(before[k] - after[k] for k in ("text_encoder", "unet", "checks"))
    saved["prompt_batch"] = batched - saved["reuse_checks"]
    total, cumulative = reference["seconds_per_prompt"], 0.0
    out = {}
    for lever, seconds in saved.items():
        cumulative += seconds
        out[lever] = {
            "seconds_saved_per_prompt": round(seconds, 2),
            "speedup_so_far": _ratio(total, total - cumulative),
        }
    return out


def _chart(victims: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (f"{name}\n{which}", v["breakdown"][which])
        for name, v in victims.items()
        for which in ("reference", "default")
    ]
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = [0.0] * len(bars)
    for piece in PIECES:
        values = [b[1][piece] for b in bars]
        ax.bar([b[0] for b in bars], values, bottom=bottom, label=piece)
        bottom = [x + y for x, y in zip(bottom, values)]
    ax.set_ylabel("seconds per prompt")
    ax.set_title("UnlearnDiffAtk (faithful schedule) on the toy world, 2 CPU cores")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--victims", nargs="*", default=list(VICTIMS), choices=list(VICTIMS))
    parser.add_argument("--output", default=str(OUT))
    parser.add_argument(
        "--breakdown-only",
        action="store_true",
        help="re-measure the step costs and rebuild the breakdowns of the runs already in --output (a few minutes)",
    )
    args = parser.parse_args()

    import erasure
    from eval.prompts import PromptSet, load_prompts
    from eval.unlearndiffatk import default_prompt_batch, target_latents
    from pipelines.sd import load_sd

    torch.manual_seed(0)
    base = load_sd("toy")
    prompts = PromptSet(load_prompts("toy:star").rows[: args.prompts], name="toy:star")
    targets = [image[0] for image in target_latents(base, list(prompts.rows))[0]]
    prompt_batch = default_prompt_batch(base)
    costs = step_costs(base, prompts, targets, prompt_batch)
    print("step costs", json.dumps(costs))

    path = Path(args.output)
    if args.breakdown_only:
        out = json.loads(path.read_text())
        out["step_costs"] = costs
        for victim in out["victims"].values():
            victim["breakdown"] = {k: breakdown(victim["runs"][k], costs, k) for k in ("reference", "default")}
            victim["lever_savings"] = lever_savings(victim, costs)
        out["breakdown_note"] = (
            "step_costs re-measured and breakdowns rebuilt from the runs' records by --breakdown-only, in a later "
            "invocation than the runs"
        )
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)
        _chart(out["victims"], CHART)
        print(json.dumps({k: v["breakdown"] for k, v in out["victims"].items()}, indent=1))
        return
    victims: dict = {}
    for name in args.victims:
        start = time.perf_counter()
        result = erasure.erase(name, base, concept="star", preset="toy")
        erase_seconds = round(time.perf_counter() - start, 1)
        victim = result.apply(base)
        reference = _run(victim, base, prompts, targets, REFERENCE)
        default = _run(victim, base, prompts, targets, {})
        keys = ("pre", "success", "steps", "timestep_of_success", "adversarial_ids", "checks")
        identical = [{k: p[k] for k in keys} for p in reference["per_prompt"]] == [
            {k: p[k] for k in keys} for p in default["per_prompt"]
        ]
        victims[name] = {
            "victim": f"toy SD, {name} toy preset erasing 'star'",
            "erase_seconds": erase_seconds,
            "runs": {"reference": reference, "default": default},
            "identical_outcomes": identical,
            "speedup_per_prompt": _ratio(reference["seconds_per_prompt"], default["seconds_per_prompt"]),
            "breakdown": {
                "reference": breakdown(reference, costs, "reference"),
                "default": breakdown(default, costs, "default"),
            },
        }
        victims[name]["lever_savings"] = lever_savings(victims[name], costs)
        print(name, json.dumps({k: v for k, v in victims[name].items() if k != "runs"}))
        # Written after each victim, atomically, so that an interrupted run keeps what it measured.
        out = {
            "prompts": f"toy:star rows 0..{args.prompts - 1}",
            "judge": "toy",
            "machine": f"CPU, {torch.get_num_threads()} threads",
            "reference": REFERENCE,
            "default": "AttackConfig() (faithful, reuse_checks, embedding_lookup, projection='pivot', prompt_batch "
            f"auto = {prompt_batch})",
            "goal": ">= 5x the reference per prompt on both victims at identical per-prompt outcomes",
            "step_costs": costs,
            "victims": victims,
            "goal_met": all(v["identical_outcomes"] and v["speedup_per_prompt"] >= 5 for v in victims.values()),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(out, indent=2))
        tmp.replace(path)
    _chart(victims, CHART)
    print(json.dumps({k: v for k, v in out.items() if k != "victims"}, indent=2))


if __name__ == "__main__":
    main()
