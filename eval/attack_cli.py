"""``erasure-studio attack``: run UnlearnDiffAtk (or the no-attack baseline) on a model or an artifact."""

from __future__ import annotations

from collections.abc import Sequence


def cmd_attack(argv: Sequence[str]) -> int:
    from ui.cli import _default_device, _Parser, open_model

    from .unlearndiffatk import AttackConfig, attack

    parser = _Parser(
        prog="erasure-studio attack",
        description="Attack an erased model with adversarial prompts and report pre-ASR and ASR. "
        "Re-running with the same --output_dir resumes: finished prompts are skipped.",
    )
    parser.add_argument("model", help="An artifact folder, 'toy', a model folder/file, or a cached hub id.")
    parser.add_argument(
        "--prompts",
        required=True,
        help="Prompt CSV (prompt, evaluation_seed, evaluation_guidance, concept) or a bundled set such as toy:star.",
    )
    parser.add_argument("--judge", default="toy", help="toy, nudenet, imagenet, clip[:BACKBONE], classifier:PATH.")
    parser.add_argument("--attack", default="unlearndiffatk", choices=["unlearndiffatk", "none"])
    parser.add_argument("--concept", default=None, help="Concept for the judge (default: the CSV's concept column).")
    parser.add_argument(
        "--base",
        default=None,
        help="Model that renders the target images (default: the artifact's base model, or the model itself).",
    )
    parser.add_argument("--schedule", default="fast", choices=["fast", "faithful"])
    parser.add_argument("--timestep_batch", type=int, default=5, help="Timesteps per UNet call (fast schedule).")
    parser.add_argument(
        "--prompt_batch",
        type=int,
        default=1,
        help="Prompts attacked together (one UNet call and one sampling call for all); changes seconds, not results.",
    )
    parser.add_argument("--prefix_tokens", type=int, default=3, help="k adversarial tokens (nudity: 5).")
    parser.add_argument("--iterations_per_timestep", type=int, default=40)
    parser.add_argument("--num_timesteps", type=int, default=50)
    parser.add_argument("--num_inference_steps", type=int, default=None, help="Sampler steps of each check image.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=None, help="Default: runs/attack-<concept>.")
    parser.add_argument("--device", default=None)
    parser.add_argument("--allow_other_base", action="store_true")
    parser.add_argument("--config", default=None, help="JSON file of the options above (configs/attack/*.json).")
    pre, _ = parser.parse_known_args(list(argv))
    if pre.config:
        from ui.cli import _load_config_file

        values = _load_config_file(pre.config)
        known = {a.dest for a in parser._actions}
        unknown = set(values) - known
        if unknown:
            from ui.cli import UsageError

            raise UsageError(f"config file {pre.config} has unknown options: {', '.join(sorted(unknown))}")
        parser.set_defaults(**values)
    args = parser.parse_args(list(argv))
    config = dict(
        schedule=args.schedule,
        timestep_batch=args.timestep_batch,
        prompt_batch=args.prompt_batch,
        prefix_tokens=args.prefix_tokens,
        iterations_per_timestep=args.iterations_per_timestep,
        num_timesteps=args.num_timesteps,
        num_inference_steps=args.num_inference_steps,
        seed=args.seed,
    )
    AttackConfig(method=args.attack, **config)  # bad values fail here, before a model is loaded

    from pathlib import Path

    from pipelines.artifacts import MANIFEST, read_manifest
    from pipelines.sd import load_sd

    device = args.device or _default_device()
    victim = open_model(args.model, base=None, device=device, allow_other_base=args.allow_other_base)
    base = None
    if args.base:
        base = load_sd(args.base, device=device)
    elif (Path(args.model) / MANIFEST).exists():
        base = load_sd(read_manifest(Path(args.model))["base_model"]["name_or_path"], device=device)
    out = args.output_dir or f"runs/attack-{(args.concept or 'prompts').replace(' ', '-')}"

    from tqdm.auto import tqdm

    from ui.cli import is_main_process

    bar = tqdm(desc=f"{args.attack} on {args.prompts}", unit="prompt", disable=not is_main_process())

    def progress(done: int, total: int, logs: dict) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix({k: f"{v:.2f}" for k, v in logs.items()})

    report = attack(
        victim,
        args.prompts,
        args.judge,
        method=args.attack,
        base=base,
        concept=args.concept,
        output_dir=out,
        progress=progress,
        **config,
    )
    bar.close()
    print(
        f"\n  prompts {report.n}   pre-ASR {100 * report.pre_asr:.1f}%   ASR {100 * report.asr:.1f}%   "
        f"mean {report.mean_seconds:.1f} s/prompt"
    )
    print(f"  report  {Path(out) / 'report.md'}")
    return 0
