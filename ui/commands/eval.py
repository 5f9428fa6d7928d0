"""``erasure-studio eval MODEL_OR_ARTIFACT``: a scorecard (JSON, Markdown, sample grid, bar chart) of an erased model
against its base. Every scorecard flag is generated from :class:`eval.scorecard.ScorecardConfig`; ``--config FILE``
supplies values that flags override.
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


def cmd_eval(argv: Sequence[str]) -> int:
    from eval.scorecard import ScorecardConfig

    parser = dataclass_parser(
        ScorecardConfig,
        prog=f"{PROG} eval",
        description="Compare an erased model with its base: forget/retain rates, UA/IRA/CRA, CLIP, FID, pre-ASR/ASR.",
    )
    parser.add_argument("model", help="An artifact folder (erasure.json), or an erased model's folder/file/hub id.")
    run = parser.add_argument_group("models")
    run.add_argument("--base", default=None, help="Base model (default: the one the artifact names).")
    run.add_argument("--concept", default=None, help="The erased concept (default: the artifact's).")
    run.add_argument("--judge", default="toy", help="Judge name: toy, nudenet, imagenet, clip, classifier:PATH.")
    run.add_argument("--config", default=None, help="JSON or YAML file of the options above; flags override it.")
    pre, _ = parser.parse_known_args(list(argv))
    if pre.config:
        parser.set_defaults(**config_file_defaults(parser, pre.config, ignore=("model",)))
    args = parser.parse_args(list(argv))

    from eval.scorecard import scorecard
    from pipelines.artifacts import MANIFEST, read_manifest
    from pipelines.data import slugify
    from pipelines.errors import ConfigError

    model_path = Path(args.model)
    is_artifact = model_path.is_dir() and (model_path / MANIFEST).exists()
    concept = args.concept
    if concept is None:
        if not is_artifact:
            raise ConfigError(f"{args.model} is not an artifact folder: pass --concept (and --base)")
        concept = read_manifest(model_path)["concept"]
    if not is_artifact and args.base is None:
        raise ConfigError("pass --base: the model to compare the erased model with")
    values = dataclass_values(ScorecardConfig, args)
    values["device"] = values["device"] or default_device()
    values["output_dir"] = Path(values["output_dir"] or f"runs/eval-{slugify(model_path.name or args.model)}")
    config = ScorecardConfig(**values)

    with ProgressBar("scorecard", unit="stage") as bar:
        card = scorecard(str(args.model), args.base, concept, args.judge, config=config, callback=bar)
    markdown = card.to_markdown()
    print()
    print(markdown.split("### Definitions")[0].rstrip())  # title, setup line and the leaderboard table
    print(f"\nwrote {config.output_dir}/scorecard.md, scorecard.json, samples.png, rates.png ({card.seconds:.0f} s)")
    return 0
