"""One SFD iteration on the Stable Diffusion v1.4 architecture (random weights, fp32, CPU): seconds and peak memory.

Usage::

    python benchmarks/sfd_sd14_step.py      # a few minutes on 2 CPU cores

Writes ``benchmarks/results/sfd_sd14_step.json`` (``--output`` to change).

SFD holds three SD UNets (the frozen teacher, the generator and the fake score network, 859.5M parameters each) and
trains two of them with Adam: in fp32 that is 3.4 GB per copy of weights, and weights + gradients + two Adam moments
for each trained network, about 31 GB before activations. The official run uses fp16 on a GPU. Each variant runs
``erasure.erase("sfd", ...)`` (from the teacher's UNet, batch 1) in a fresh process with its address space capped at
``--memory-limit-gb`` (so that running out raises ``MemoryError`` in the child instead of waking the kernel's OOM
killer), for ``--steps`` iterations, and records seconds per iteration and ``ru_maxrss``, or that it did not fit:

- ``full``: the whole iteration (fake-score step, generator step with the forget branch);
- ``no_forget``: the forget branch off (λ_g,f = λ_sg,f = 0), i.e. plain SiD, for scale;
- ``checkpointing_8bit_adam``: the whole iteration with gradient checkpointing in both trained UNets and
  bitsandbytes' 8-bit Adam (``pip install ".[lowmem]"``): the weights stay fp32 (3 x 3.4 GB), each network's gradients
  are freed after its own step (3.4 GB at a time), and the four Adam moments take 3.4 GB instead of 13.8 GB.
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
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "sfd_sd14_step.json"
VARIANTS = {
    "full": {},
    "no_forget": {"forget_weight": 0.0, "fake_forget_weight": 0.0},
    "checkpointing_8bit_adam": {"gradient_checkpointing": True, "use_8bit_adam": True},
}


def worker(variant: str, steps: int, memory_limit_gb: float) -> dict[str, Any]:
    limit = int(memory_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    import erasure
    from benchmarks.doco_sd14_step import sd14_random_pipeline

    torch.set_num_threads(2)
    out: dict[str, Any] = {"variant": variant, "steps": steps, "memory_limit_gb": memory_limit_gb}
    stamps: list[float] = []
    start = time.perf_counter()
    try:
        pipe = sd14_random_pipeline()
        erasure.erase(
            "sfd",
            pipe,
            concept="brad pitt",
            override="a middle aged man",
            init_from_teacher=True,
            max_train_steps=steps,
            batch_size=1,
            callback=lambda step, total, logs: stamps.append(time.perf_counter()),
            **VARIANTS[variant],
        )
        out["fits"] = True
    except (MemoryError, RuntimeError) as err:  # torch's CPU allocator raises RuntimeError("can't allocate memory")
        if isinstance(err, RuntimeError) and "allocate memory" not in str(err):
            raise
        out["fits"] = False
        out["failed_after_iterations"] = len(stamps)
        out["error"] = str(err).splitlines()[-1][-200:]
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    out.update(
        {
            "seconds_per_iteration_median": round(statistics.median(per_step), 2) if per_step else None,
            "seconds_first_iteration_and_setup": round(stamps[0] - start, 2) if stamps else None,
            "seconds_total": round(time.perf_counter() - start, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="Iterations per variant (the median needs 2 or more).")
    parser.add_argument("--memory-limit-gb", type=float, default=22.0, help="Address-space cap of each child.")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.memory_limit_gb)))
        return 0
    runs = []
    for variant in args.variants:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", variant, "--steps", str(args.steps)]
            + ["--memory-limit-gb", str(args.memory_limit_gb)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if lines:
            run = json.loads(lines[-1])
        elif proc.returncode < 0:  # a cap above the free memory lets the kernel's OOM killer end the child instead
            run = {"variant": variant, "memory_limit_gb": args.memory_limit_gb, "fits": False}
            run["error"] = f"killed by signal {-proc.returncode} (the kernel's OOM killer: out of physical memory)"
        else:
            run = {"variant": variant, "error": proc.stderr.strip()[-2000:]}
        run["date"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        print(json.dumps(run), flush=True)
        runs.append(run)
    if args.output.is_file():  # keep the variants not re-run this time (each run carries its date)
        previous = json.loads(args.output.read_text()).get("runs", [])
        kept = [r for r in previous if r.get("variant") not in args.variants]
        order = {name: i for i, name in enumerate(VARIANTS)}
        runs = sorted(kept + runs, key=lambda r: order.get(r["variant"], len(order)))
    out = {
        "benchmark": "sfd_sd14_step",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch_threads": 2},
        "model": "SD v1.4 architecture, random weights, fp32, CPU; generator and fake score from the teacher's UNet",
        "batch_size": 1,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
