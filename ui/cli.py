"""The ``erasure-studio`` command line.

```
erasure-studio methods
erasure-studio erase METHOD --concept star [--preset toy] [--pretrained_model_name_or_path toy] [--output_dir DIR]
erasure-studio sample ARTIFACT_OR_MODEL --prompt "a red star" --seed 0 1 2 [--output_dir DIR]
erasure-studio toy build | toy grid
```

Every method flag is generated from the method's config dataclass (``transformers.HfArgumentParser``), so each flag
has the field's type, choices and help text; ``--config FILE.json|yaml`` supplies values that flags override.
Bad input prints one line naming the problem and the fix, and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pipelines.errors import ConfigError, StudioError

PROG = "erasure-studio"


class UsageError(StudioError):
    """Bad command-line usage."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block) and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _method_parser(name: str) -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    import erasure

    config_class = erasure.get_config_class(name)
    method = erasure.get_method_class(name)

    class Parser(HfArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{message} (see: {PROG} erase {name} --help)")

    parser = Parser(config_class, prog=f"{PROG} erase {name}", description=f"{method.summary} Paper: {method.paper}.")
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
        "--preset", default=None, choices=sorted(config_class.presets) or None, help="Named preset, e.g. 'toy'."
    )
    group.add_argument("--device", default=None, help="Device for the run (default: cuda if available, else cpu).")
    group.add_argument(
        "--eval_judge",
        default=None,
        help="Judge for before/after rates at the end (default: 'toy' on the toy model, none otherwise; 'none').",
    )
    group.add_argument("--eval_seeds", type=int, default=2, help="Seeds per prompt for the before/after rates.")
    return parser


def _load_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"config file {path} does not exist; check the path")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as err:
        raise UsageError(f"config file {path} could not be parsed ({err.__class__.__name__}); fix its syntax") from err
    if not isinstance(values, dict):
        raise UsageError(f"config file {path} must hold a mapping of field names to values")
    return values


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "concept"


def cmd_erase(argv: Sequence[str]) -> int:
    import erasure

    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} erase METHOD --concept CONCEPT [options]\n\nmethods:")
        for name in erasure.list_methods():
            print(f"  {name:<20} {erasure.get_method_class(name).summary}")
        print(f"\n{PROG} erase METHOD --help lists every option of a method.")
        return 0 if argv else 2
    name = argv[0]
    method = erasure.get_method_class(name)
    parser = _method_parser(method.name)
    config_class = method.config_class
    field_names = set(config_class.help())

    # Defaults come from the preset, then the config file; explicit flags override both.
    pre, _ = parser.parse_known_args(list(argv[1:]))
    defaults: dict[str, Any] = {}
    if pre.preset:
        defaults.update(config_class.presets[pre.preset])
    if pre.config:
        file_values = _load_config_file(pre.config)
        file_values.pop("method", None)
        unknown = set(file_values) - field_names
        if unknown:
            raise UsageError(f"config file {pre.config} has unknown fields: {', '.join(sorted(unknown))}")
        defaults.update(file_values)
    parser.set_defaults(**defaults)
    args = parser.parse_args(list(argv[1:]))
    values = {k: v for k, v in vars(args).items() if k in field_names}
    config = erasure.make_config(method.name, **values)

    output_dir = Path(args.output_dir or f"runs/{method.name}-{_slug(config.concept)}")
    from pipelines.artifacts import check_output_dir

    check_output_dir(output_dir, overwrite=args.overwrite)  # fail before training, not after
    device = args.device or _default_device()
    model = _load_model(method.model_type, args.pretrained_model_name_or_path, device=device, revision=args.revision)

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.max_train_steps,
        desc=f"{method.name}: erasing '{config.concept}'",
        unit="step",
        disable=not is_main_process(),
    )

    def callback(step: int, total: int, logs: dict[str, float]) -> None:
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, float)}, refresh=False)

    result = method(config).erase(model, callback=callback)
    bar.close()
    if not is_main_process():
        return 0  # under `accelerate launch`, process 0 evaluates and writes the artifact

    evaluation = None
    judge_name = args.eval_judge
    if judge_name is None and args.pretrained_model_name_or_path == "toy":
        judge_name = "toy"
    if judge_name and judge_name != "none" and method.model_type == "stable_diffusion":
        evaluation = _before_after(model, result, judge_name, seeds=args.eval_seeds)
    path = result.save(output_dir, base_model=model, overwrite=args.overwrite, evaluation=evaluation)
    _print_summary(result, path, evaluation)
    return 0


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a multi-process launch (accelerate launch / torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


def _finish_distributed(code: int) -> int:
    """End a multi-process run cleanly. accelerate on CPU sometimes aborts at interpreter exit ("terminate called
    without an active exception", ENVIRONMENT.md); leaving through ``os._exit`` after the group is destroyed avoids it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _load_model(model_type: str, name_or_path: str, *, device: str, revision: str | None = None):
    if model_type == "stylegan2":
        import gan

        return gan.load(name_or_path, device=device)
    from pipelines.sd import load_sd

    return load_sd(name_or_path, device=device, revision=revision)


def _before_after(model, result, judge_name: str, *, seeds: int) -> dict[str, Any] | None:
    from eval.judges import load_judge
    from eval.rates import erasure_rates
    from pipelines.artifacts import _assemble

    judge = load_judge(judge_name)
    if not judge.knows(result.config.concept):
        print(f"note: the {judge_name} judge does not know '{result.config.concept}'; skipping before/after rates")
        return None
    erased = _assemble(model, result.artifact_kind, result.components)
    print(f"judging base and erased samples with the '{judge_name}' judge ...")
    return erasure_rates(model, erased, result.config.concept, judge, seeds=seeds)


def _print_summary(result, path: Path, evaluation: dict[str, Any] | None) -> None:
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


def cmd_sample(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} sample", description="Generate images from a model or an artifact folder.")
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
    device = args.device or _default_device()
    pipe = open_model(args.model, base=args.base, device=device, allow_other_base=args.allow_other_base)

    from pipelines.images import image_grid, to_pil
    from pipelines.sd import generate

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
        im.save(out / f"{i:03d}-{_slug(p)[:40]}-s{s}.png")
    n = len(args.seed)
    rows = [images[i * n : (i + 1) * n] for i in range(len(args.prompt))]
    image_grid(rows, row_labels=args.prompt, col_labels=[f"seed {s}" for s in args.seed]).save(out / "grid.png")
    print(f"wrote {len(images)} images and grid.png to {out}")
    return 0


def open_model(name_or_path: str, *, base: str | None = None, device: str = "cpu", allow_other_base: bool = False):
    """A pipeline from a model name/path, or from an artifact folder applied to its base model."""
    from pipelines.artifacts import MANIFEST, apply_artifact, read_manifest
    from pipelines.sd import load_sd

    path = Path(name_or_path)
    if path.is_dir() and (path / MANIFEST).exists():
        manifest = read_manifest(path)
        base_name = base or manifest["base_model"].get("name_or_path")
        if not base_name:
            raise ConfigError(f"artifact {path} does not name its base model; pass --base")
        if manifest["sampler"] == "stylegan2":
            import gan

            return apply_artifact(gan.load(base_name, device=device), path, allow_other_base=allow_other_base)
        return apply_artifact(load_sd(base_name, device=device), path, allow_other_base=allow_other_base)
    return load_sd(name_or_path, device=device)


def cmd_methods(argv: Sequence[str]) -> int:
    import erasure

    for name in erasure.list_methods():
        method = erasure.get_method_class(name)
        print(f"{name:<20} [{method.model_type}] {method.summary}")
    return 0


def cmd_toy(argv: Sequence[str]) -> int:
    parser = _Parser(prog=f"{PROG} toy", description="Build or inspect the bundled toy world.")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    build = sub.add_parser(
        "build", help="Train the toy world from scratch (about 3.5 h on 2 CPU cores; --stages picks parts)."
    )
    build.add_argument("--output_dir", default=None, help="Where to write (default: the package's toy assets).")
    build.add_argument(
        "--stages",
        default=None,
        help="Comma-separated stages (default: judge,vae,sd,clip,gan; also gan_without:OBJECT).",
    )
    build.add_argument("--seed", type=int, default=0)
    grid = sub.add_parser("grid", help="Write a prompts x seeds sample grid of a model.")
    grid.add_argument("--model", default="toy")
    grid.add_argument("--output", default="toy-grid.png")
    grid.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args(list(argv))
    if args.action == "build":
        from pipelines.sd import TOY_DIR
        from pipelines.toy.build import STAGES
        from pipelines.toy.build import build as run_build

        stages = tuple(s.strip() for s in args.stages.split(",")) if args.stages else STAGES
        bad = [s for s in stages if s not in STAGES and not s.startswith("gan_without:")]
        if bad:
            raise UsageError(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
        report = run_build(args.output_dir or TOY_DIR, stages=stages, seed=args.seed)
        print(json.dumps({k: v.get("seconds") for k, v in report.items()}, indent=2))
        return 0
    from pipelines.toy.world import COLOURS, OBJECTS, prompt_for

    pipe = open_model(args.model, device=_default_device())
    from pipelines.images import image_grid, to_pil
    from pipelines.sd import generate

    prompts = [prompt_for(o, c) for o, c in zip(OBJECTS, COLOURS * 2)]
    flat = [p for p in prompts for _ in range(args.seeds)]
    seeds = [s for _ in prompts for s in range(args.seeds)]
    images = to_pil(generate(pipe, flat, seeds=seeds))
    rows = [images[i * args.seeds : (i + 1) * args.seeds] for i in range(len(prompts))]
    image_grid(rows, row_labels=prompts, col_labels=[f"seed {s}" for s in range(args.seeds)]).save(args.output)
    print(f"wrote {args.output}")
    return 0


COMMANDS = {"methods": cmd_methods, "erase": cmd_erase, "sample": cmd_sample, "toy": cmd_toy}


def _register_later_commands() -> None:
    """Commands that live beside their feature (attack, eval, demo, run) register here when present."""
    for name, module, func in (
        ("attack", "eval.attack_cli", "cmd_attack"),
        ("eval", "eval.scorecard", "cmd_eval"),
        ("demo", "ui.app", "cmd_demo"),
        ("run", "pipelines.jobs", "cmd_run"),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, func):
            COMMANDS[name] = getattr(mod, func)


def quiet_libraries() -> None:
    """Silence the loading progress bars and info logs of diffusers/transformers; our own bars stay."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging
    except ImportError:  # pragma: no cover
        return
    for lib in (diffusers_logging, transformers_logging):
        lib.disable_progress_bar()
        lib.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``erasure-studio`` console script. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet_libraries()
    _register_later_commands()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {PROG} COMMAND [options]\n\ncommands: {', '.join(COMMANDS)}\n")
        print(f"{PROG} COMMAND --help shows a command's options.")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
        code = COMMANDS[command](rest)
    except StudioError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was saved", file=sys.stderr)
        code = 130
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _finish_distributed(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
