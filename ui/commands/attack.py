"""``erasure-studio attack MODEL_OR_ARTIFACT --prompts ...``: UnlearnDiffAtk (or the no-attack baseline), with pre-ASR
and ASR. Every attack flag is generated from :class:`eval.unlearndiffatk.AttackConfig`; ``--config FILE`` (e.g.
``configs/attack/*.json``) supplies values that flags override.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .common import (
    PROG,
    ProgressBar,
    config_file_defaults,
    dataclass_parser,
    dataclass_values,
    default_device,
)


def cmd_attack(argv: Sequence[str]) -> int:
    from eval.unlearndiffatk import AttackConfig

    parser = dataclass_parser(
        AttackConfig,
        prog=f"{PROG} attack",
        description="Attack an erased model with adversarial prompts and report pre-ASR and ASR. "
        "Re-running with the same --output_dir resumes: finished prompts are skipped.",
    )
    parser.add_argument("model", help="An artifact folder, 'toy', a model folder/file, or a cached hub id.")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--prompts",
        required=True,
        help="Prompt CSV (prompt, evaluation_seed, evaluation_guidance, concept) or a bundled set such as toy:star.",
    )
    run.add_argument("--judge", default="toy", help="toy, nudenet, imagenet, clip[:BACKBONE], classifier:PATH.")
    run.add_argument("--concept", default=None, help="Concept for the judge (default: the CSV's concept column).")
    run.add_argument(
        "--base",
        default=None,
        help="Model that renders the target images (default: the artifact's base model, or the model itself).",
    )
    run.add_argument("--output_dir", default=None, help="Default: runs/attack-<concept>.")
    run.add_argument("--device", default=None, help="Device (default: cuda if available, else cpu).")
    run.add_argument("--allow_other_base", action="store_true", help="Apply an artifact to another base model.")
    run.add_argument("--config", default=None, help="JSON or YAML file of the options above (configs/attack/*.json).")
    pre, _ = parser.parse_known_args(list(argv))
    if pre.config:
        parser.set_defaults(**config_file_defaults(parser, pre.config, ignore=("model",)))
    args = parser.parse_args(list(argv))
    config = AttackConfig(**dataclass_values(AttackConfig, args))  # bad values fail here, before a model is loaded

    from eval.prompts import load_prompts
    from eval.unlearndiffatk import ONE_STEP_REFUSAL, attack
    from pipelines import open_model
    from pipelines.artifacts import MANIFEST, read_manifest
    from pipelines.errors import ConfigError

    # Every input is checked before a model loads: the prompt set (an empty one, or rows without a concept, fail
    # here), then the artifact's manifest; only then do models load and the progress bar start.
    prompt_set = load_prompts(args.prompts)
    if not args.concept and any(not row.concept for row in prompt_set):
        raise ConfigError(f"some prompts of {args.prompts} have no concept: pass --concept or add a 'concept' column")
    device = args.device or default_device()
    # An artifact's base is loaded once: the victim is the base with the erased part in, and the same base renders
    # the target images unless --base names another model.
    artifact_base = None
    if (Path(args.model) / MANIFEST).exists():
        manifest = read_manifest(Path(args.model))
        if manifest["sampler"] == "one_step":
            raise ConfigError(ONE_STEP_REFUSAL)
        base_name = manifest["base_model"].get("name_or_path")
        if not base_name:
            raise ConfigError(f"artifact {args.model} does not name its base model; pass --base")
        artifact_base = open_model(base_name, device=device)
    victim = open_model(args.model, base=artifact_base, device=device, allow_other_base=args.allow_other_base)
    base = open_model(args.base, device=device) if args.base else artifact_base
    out = args.output_dir or f"runs/attack-{(args.concept or 'prompts').replace(' ', '-')}"

    with ProgressBar(f"{config.method} on {args.prompts}", unit="prompt") as bar:
        report = attack(
            victim,
            prompt_set,
            args.judge,
            base=base,
            concept=args.concept,
            output_dir=out,
            config=config,
            callback=bar,
        )
    print(
        f"\n  prompts {report.n}   pre-ASR {100 * report.pre_asr:.1f}%   ASR {100 * report.asr:.1f}%   "
        f"mean {report.mean_seconds:.1f} s/prompt   schedule {config.schedule}"
    )
    if report.schedule_note:
        print(f"  note    {report.schedule_note}")
    print(f"  report  {Path(out) / 'report.md'}")
    return 0
