"""``erasure-studio erase METHOD --concept CONCEPT``: run an erasure method and save the artifact folder.

Every method flag is generated from the method's config dataclass (``transformers.HfArgumentParser``), so each flag
has the field's type, choices and help text; ``--config FILE.json|yaml`` and ``--preset NAME`` supply values that
flags override. On the toy model a method's ``toy`` preset is the default (one line says so); ``--preset paper`` gives
the paper's settings anywhere. The run ends with a before/after sample grid sized to the model (diffusers' validation
flags: ``--validation_prompts``, ``--num_validation_images``, 0 to skip, ``--validation_inference_steps``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .common import (
    PROG,
    ProgressBar,
    UsageError,
    config_file_defaults,
    dataclass_parser,
    default_device,
    erase_data_for,
    is_main_process,
)


def method_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``erasure-studio erase NAME``: the method's config fields, then the run's own flags."""
    import erasure

    method = erasure.get_method_class(name)
    config_class = method.config_class
    parser = dataclass_parser(
        config_class, prog=f"{PROG} erase {method.name}", description=f"{method.summary} Paper: {method.paper}."
    )
    group = parser.add_argument_group("run")
    group.add_argument(
        "--pretrained_model_name_or_path",
        default="toy",
        help="Base model: 'toy', a diffusers folder, a .safetensors/.ckpt file, or a cached hub id (GAN methods: "
        "'toy' or a StyleGAN2 checkpoint).",
    )
    group.add_argument("--revision", default=None, help="Hub revision of the base model.")
    group.add_argument("--output_dir", default=None, help="Artifact folder (default: runs/<method>-<concept>).")
    group.add_argument("--overwrite", action="store_true", help="Replace an artifact already in --output_dir.")
    group.add_argument("--config", default=None, help="JSON or YAML file of config values; flags override it.")
    group.add_argument(
        "--preset",
        default=None,
        choices=config_class.preset_names(),
        help="Named preset: 'paper' (the config's defaults, the paper's setting) or the method's own (default: "
        "'toy' on the toy model, else 'paper'). Flags and --config override it.",
    )
    group.add_argument("--device", default=None, help="Device for the run (default: cuda if available, else cpu).")
    group.add_argument(
        "--eval_judge",
        default=None,
        help="Judge for before/after rates at the end (default: 'toy' on the toy model, none otherwise; 'none').",
    )
    group.add_argument("--eval_seeds", type=int, default=2, help="Seeds per prompt for the before/after rates.")
    grid = parser.add_argument_group("before/after grid (samples.png)")
    grid.add_argument(
        "--validation_prompts",
        nargs="+",
        default=None,
        help="Prompts of the grid (default: the concept twice, then concepts that should survive).",
    )
    grid.add_argument(
        "--num_validation_images",
        type=int,
        default=None,
        help="Images per prompt, 0 to skip the grid (default: 3 on a small model such as the toy one; on a "
        "full-size model 1 on a GPU, none on a CPU).",
    )
    grid.add_argument(
        "--validation_inference_steps",
        type=int,
        default=None,
        help="Sampler steps of the grid (default: the pipeline's on a small model, 25 on a full-size one).",
    )
    return parser


def cmd_erase(argv: Sequence[str]) -> int:
    import erasure
    from erasure.base import default_preset

    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} erase METHOD --concept CONCEPT [options]\n\nmethods:")
        for name in erasure.list_methods():
            print(f"  {name:<20} {erasure.get_method_class(name).summary}")
        print(f"\n{PROG} erase METHOD --help lists every option of a method.")
        return 0 if argv else 2
    method = erasure.get_method_class(argv[0])
    parser = method_parser(method.name)
    config_class = method.config_class
    field_names = set(config_class.help())

    # Defaults come from the preset, then the config file; explicit flags override both.
    pre, _ = parser.parse_known_args(list(argv[1:]))
    preset = pre.preset or default_preset(method.name, pre.pretrained_model_name_or_path)
    defaults: dict[str, Any] = config_class.preset_values(preset) if preset else {}
    if pre.config:
        defaults.update(config_file_defaults(parser, pre.config, allowed=field_names, ignore=("method",)))
    parser.set_defaults(**defaults)
    args = parser.parse_args(list(argv[1:]))
    if args.num_validation_images is not None and args.num_validation_images < 0:
        raise UsageError(f"--num_validation_images must be 0 or more, got {args.num_validation_images}")
    values = {k: v for k, v in vars(args).items() if k in field_names}
    config = erasure.make_config(method.name, **values)

    from pipelines import open_model
    from pipelines.artifacts import check_output_dir
    from pipelines.data import slugify

    output_dir = Path(args.output_dir or f"runs/{method.name}-{slugify(config.concept)}")
    check_output_dir(output_dir, overwrite=args.overwrite)  # fail before training, not after
    device = args.device or default_device()
    model = open_model(
        args.pretrained_model_name_or_path, model_type=method.model_type, device=device, revision=args.revision
    )

    data = erase_data_for(config)
    method(config).check(model, data=data)  # inputs that need the model fail here, before the progress bar
    if preset and not pre.preset:  # said once the inputs are known to be good (a refused command prints nothing)
        print(f"{method.name}: the '{preset}' preset on the toy model (--preset paper for the paper's settings)")
    with ProgressBar(f"{method.name}: erasing '{config.concept}'", unit="step", total=config.max_train_steps) as bar:
        result = method(config).erase(model, data=data, callback=bar)
    if not is_main_process():
        return 0  # under `accelerate launch`, process 0 evaluates and writes the artifact

    evaluation = None
    judge_name = args.eval_judge
    if judge_name is None and args.pretrained_model_name_or_path == "toy":
        judge_name = "toy"
    if judge_name and judge_name != "none" and method.model_type == "stable_diffusion":
        evaluation = _before_after(model, result, judge_name, seeds=args.eval_seeds)
    with _grid_progress(model, result, args) as grid_bar:
        path = result.save(
            output_dir,
            base_model=model,
            overwrite=args.overwrite,
            evaluation=evaluation,
            sample_prompts=args.validation_prompts,
            num_validation_images=args.num_validation_images,
            validation_inference_steps=args.validation_inference_steps,
            callback=grid_bar,
        )
    _print_summary(result, path, evaluation)
    return 0


def _grid_progress(model: Any, result: Any, args: argparse.Namespace) -> ProgressBar | nullcontext:
    """A bar for the before/after grid of a diffusion model (or, when there is none to sample, a ``None`` context)."""
    if result.sampler not in ("multistep", "one_step"):
        return nullcontext()
    from pipelines.artifacts import default_sample_prompts
    from pipelines.sd import sample_grid_defaults

    default_images, default_steps = sample_grid_defaults(model)
    images = default_images if args.num_validation_images is None else args.num_validation_images
    if images == 0:
        if args.num_validation_images is None:
            print(
                "no before/after grid: a full-size model on a CPU would sample for a long time "
                "(--num_validation_images 1 draws one image per prompt)"
            )
        return nullcontext()
    steps = args.validation_inference_steps or default_steps
    prompts = args.validation_prompts or default_sample_prompts(result.config.concept, result.base.get("name_or_path"))
    steps_text = f"{steps} steps" if steps else "the pipeline's steps"
    return ProgressBar(f"before/after grid ({len(prompts)} prompts x {images}, {steps_text})", unit="image")


def _before_after(model: Any, result: Any, judge_name: str, *, seeds: int) -> dict[str, Any] | None:
    from eval.judges import load_judge
    from eval.rates import erasure_rates

    judge = load_judge(judge_name)
    if not judge.knows(result.config.concept):
        print(f"note: the {judge_name} judge does not know '{result.config.concept}'; skipping before/after rates")
        return None
    print(f"judging base and erased samples with the '{judge_name}' judge ...")
    return erasure_rates(model, result.apply(model), result.config.concept, judge, seeds=seeds)


def _print_summary(result: Any, path: Path, evaluation: dict[str, Any] | None) -> None:
    m = result.metrics
    print()
    print(f"  method             {result.method}")
    print(f"  concept            {result.config.concept}")
    print(f"  steps              {result.config.max_train_steps}")
    print(f"  wall time          {m.get('wall_seconds', 0):.1f} s")
    print(f"  peak memory        {m.get('peak_memory_mb', 0):.0f} MB ({m.get('peak_memory_kind', '')})")
    print(f"  trained parameters {m.get('trainable_parameters', 0):,}")
    print(f"  final loss         {m.get('final_loss', float('nan')):.5f}")
    print(f"  artifact           {path} ({m.get('artifact_bytes', 0) / 1e6:.2f} MB)")
    if evaluation:
        print()
        print(f"  judge rates ({evaluation['judge']['name']} judge, {evaluation['samples_per_concept']} samples each)")
        print(f"  {'concept':<12} {'before':>7} {'after':>7}")
        for concept, before in evaluation["before"].items():
            mark = "  <- erased" if concept == evaluation["concept"] else ""
            print(f"  {concept:<12} {before:7.2f} {evaluation['after'][concept]:7.2f}{mark}")
        print(
            f"  relative drop on '{evaluation['concept']}': {100 * evaluation['forget_drop']:.0f}%, "
            f"largest shift elsewhere: {100 * evaluation['max_other_shift']:.0f} points"
        )
    if (path / "samples.png").exists():
        print(f"\n  before/after grid  {path / 'samples.png'}")
