"""Batch studies: the standard run (erase, save, attack, score) and the leaderboard, over ``pipelines.jobs``.

``pipelines/jobs.py`` is the engine (the job file's schema, the grid, run folders named by config hash, ``done.json``
markers, ``results.jsonl``, the event log and the ``local`` / ``slurm`` / ``ray`` executors). It sits in the lowest
layer and cannot know the method registry, the attack or the scorecard, so this module supplies them:

- :func:`validate_study`: the checks that need the registry (an unknown method with its closest name, an unknown
  config field with its closest name, a bad preset, unknown attack or scorecard options), for every grid point,
  before anything runs;
- :func:`resolve_config`: the full config a run will use (preset + grid point + concept + seed), which the run's
  folder hash covers, so that a run is redone when its method's defaults change;
- :func:`run_one`: the runner every executor calls in its worker: open the base model, ``erasure`` method ->
  artifact -> UnlearnDiffAtk -> scorecard -> one flat dict of numbers;
- :func:`write_leaderboard`: ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` and two plots from
  ``results.jsonl``, with each method paper's central claim checked against the rows (:mod:`eval.claims`);
- :func:`run_study`: all of it in one call. ``erasure-studio run`` and ``erasure-studio report`` are its command line.

Work shared by the runs of a study is computed once and read back from ``<study>/cache/images`` (an image cache keyed
by the model's weights, prompt, seed and sampler settings): the base model's forget/retain samples of the scorecard,
the attack's target images per prompt set, and the images DoCo and SalUn train on (their ``cache_dir`` field points
there unless the job file sets it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.errors import ConfigError, check_options
from pipelines.jobs import (
    ERROR_FILE,
    RESULTS_FILE,
    RUNS_DIR,
    EventCallback,
    RunContext,
    RunSpec,
    StudyResult,
    StudySpec,
    atomic_write_text,
    expand_runs,
    load_spec,
    planned_records,
    run_jobs,
    study_plan,
)

from .claims import ClaimCheck, check_claims, claims_markdown

LEADERBOARD_COLUMNS: tuple[str, ...] = ("pre-ASR", "ASR", "FID", "CLIP", "UA", "IRA", "CRA", "time", "memory")
"""The leaderboard's columns, named as the public leaderboards name them (time in seconds, memory in MB)."""
# Beside them, what the erasure literature's own tables report: forget rate, paraphrase forget rate (the concept asked
# for in other words), the worst shift of another concept's rate, and the erasure's own wall time.
# GAN runs add PUL (the relative drop of the concept's share on shared latents), kept (of the samples without the
# concept, the share that keep their top class: the paired view the shares hide) and γ (Text-to-Unlearn's degree of
# unlearning); their FID column holds the FD between erased and base samples (``eval.gan_scorecard``).
EXTRA_COLUMNS: tuple[str, ...] = ("forget", "paraphrase", "retain shift", "erase time", "PUL", "gamma", "kept")
RATE_COLUMNS = ("pre-ASR", "ASR", "UA", "IRA", "CRA", "forget", "paraphrase", "retain shift", "PUL", "kept")
GAN_TABLE_COLUMNS: tuple[str, ...] = (
    "forget",
    "PUL",
    "retain shift",
    "kept",
    "FID",
    "gamma",
    "erase time",
    "time",
    "memory",
)
# The Markdown table's order: what was erased, what survived, quality, robustness, cost.
TABLE_COLUMNS: tuple[str, ...] = (
    "forget",
    "paraphrase",
    "retain shift",
    "FID",
    "CLIP",
    "UA",
    "IRA",
    "CRA",
    "pre-ASR",
    "ASR",
    "erase time",
    "time",
    "memory",
)
IMAGE_CACHE = "images"


# ---------------------------------------------------------------- checks that need the registry


def resolve_config(run: RunSpec) -> dict[str, Any]:
    """The full config of a run, ``make_config(method, preset, **grid point, concept, seed).to_dict()``."""
    import erasure

    return erasure.make_config(
        run.method, preset=run.preset, **run.overrides, concept=run.concept, seed=run.seed
    ).to_dict()


def validate_study(spec: StudySpec | str | os.PathLike | Mapping[str, Any]) -> tuple[StudySpec, list[RunSpec]]:
    """Check a study completely before anything runs, and plan it.

    Beyond :func:`pipelines.jobs.load_spec` (shape, empty lists and grids, model paths, YAML syntax): every method is
    registered, every preset exists, every grid point builds a valid config (an unknown field names the closest
    one), and the attack and scorecard options are fields of ``AttackConfig`` / ``ScorecardConfig``. A GAN method
    is scored by the GAN scorecard and its attack is marked as not applying. Raises a one-line
    :class:`~pipelines.errors.ConfigError`.

    Returns:
        ``(spec, runs)``: the study and its runs in plan order.
    """
    import erasure

    from .scorecard import ScorecardConfig
    from .unlearndiffatk import AttackConfig

    spec = load_spec(spec)
    for i, method in enumerate(spec.methods):
        cls = erasure.get_method_class(method.name)  # unknown method: ConfigError with the closest name
        if method.preset is not None:
            cls.config_class.preset_values(method.preset)
        check_options(f"methods[{i}] ({cls.name})", method.config, cls.config_class.help())
    attack, card = spec.evaluations.attack, spec.evaluations.scorecard
    check_options("evaluations.attack.config", attack.config, {f.name for f in dataclasses.fields(AttackConfig)})
    AttackConfig(**attack.config)
    if "{concept}" not in attack.prompts and len(spec.concepts) > 1 and attack.enabled:
        raise ConfigError(
            f"evaluations.attack.prompts is {attack.prompts!r} for {len(spec.concepts)} concepts; "
            "write {concept} where each run's concept goes, e.g. toy:{concept}"
        )
    reserved = {"attack_report", "output_dir", "cache_dir", "device"}
    options = {f.name for f in dataclasses.fields(ScorecardConfig)} - reserved
    check_options("evaluations.scorecard.config", card.config, options)
    ScorecardConfig(**card.config)
    runs = expand_runs(spec, resolve_config)  # every grid point's config is built: a bad value fails here
    return spec, runs


# ---------------------------------------------------------------- the standard run


def run_one(run: RunSpec, workdir: Path, context: RunContext) -> dict[str, Any]:
    """Erase, save the artifact, attack, score: the runner of :func:`run_study` (``pipelines.jobs.Runner``).

    Writes ``artifact/`` (the artifact folder), ``attack/`` (the attack report) and ``scorecard/`` under
    ``workdir``; returns the numbers the leaderboard reads, each with the backend that measured it.
    """
    import erasure
    from pipelines import open_model

    from .judges import load_judge

    method_cls = erasure.get_method_class(run.method)
    config = erasure.config_from_dict(run.config)
    images = context.cache_dir / IMAGE_CACHE
    if hasattr(config, "cache_dir") and "cache_dir" not in run.overrides:
        config = dataclasses.replace(config, cache_dir=str(images))  # DoCo/SalUn: one image cache per study
    device = context.device
    model = open_model(run.model, model_type=method_cls.model_type, device=device)
    judge_name = getattr(config, "judge", None)
    data = erasure.EraseData(judge=load_judge(judge_name)) if judge_name else None
    method = method_cls(config)
    method.check(model, data=data)

    def erase_progress(step: int, total: int, logs: Mapping[str, Any]) -> None:
        context.progress(step, total, {"stage": "erase", **logs})

    result = method.erase(model, data=data, callback=erase_progress)
    context.progress(0, 1, {"stage": "save"})
    result.save(workdir / "artifact", base_model=model, num_validation_images=run.validation_images)
    out: dict[str, Any] = {
        "artifact": f"{RUNS_DIR}/{run.name}/artifact",
        "erase": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, str))},
        "metrics": {},
        "backends": {},
        "sampler": result.sampler,
    }
    if result.sampler == "stylegan2":
        return _score_gan(run, result, model, workdir, context, out)
    erased = result.apply(model)

    report = None
    attack_spec = run.evaluations["attack"]
    if attack_spec["enabled"] and result.sampler == "one_step":
        # UnlearnDiffAtk optimises a denoising loss a one-step generator does not have (ONE_STEP_REFUSAL).
        out["backends"]["ASR"] = "does not apply to a one-step generator"
    elif attack_spec["enabled"]:
        report = _run_attack(run, erased, model, attack_spec, workdir / "attack", images, context)
        out["attack"] = {k: report.summary()[k] for k in ("pre_asr", "asr", "n_prompts", "schedule", "attack")}
        out["metrics"].update({"pre-ASR": report.pre_asr, "ASR": report.asr})
        judge = report.judge.get("name", attack_spec["judge"])
        schedule = report.config.get("schedule")
        backend = f"UnlearnDiffAtk ({schedule} schedule) on {report.n} prompts, {judge} judge"
        out["backends"].update({"pre-ASR": f"no attack, {judge} judge, {report.n} prompts", "ASR": backend})

    card_spec = run.evaluations["scorecard"]
    if card_spec["enabled"]:
        from .scorecard import scorecard

        def card_progress(step: int, total: int, logs: Mapping[str, Any]) -> None:
            context.progress(step, total, {**logs, "stage": f"scorecard: {logs.get('stage', '')}"})

        card = scorecard(
            erased,
            model,
            run.concept,
            card_spec["judge"],
            attack_report=report.summary() if report is not None else None,
            output_dir=workdir / "scorecard",
            cache_dir=images,
            device=device,
            callback=card_progress,
            **card_spec["config"],
        )
        row = next(r for r in card.leaderboard() if r["model"] == "erased")
        base_row = next(r for r in card.leaderboard() if r["model"] == "base")
        for key in ("FID", "CLIP", "UA", "IRA", "CRA"):
            out["metrics"][key] = row[key]
            out["metrics"][f"base {key}"] = base_row[key]
        out["metrics"]["forget"] = card.forget_rate["erased"]
        out["metrics"]["base forget"] = card.forget_rate["base"]
        paraphrases = card.rates.get("paraphrases", [])
        if paraphrases:  # pooled over the paraphrase groups, weighted by their samples
            samples = sum(p["samples"] for p in paraphrases)
            for role, key in (("erased", "paraphrase"), ("base", "base paraphrase")):
                out["metrics"][key] = sum(p[role] * p["samples"] for p in paraphrases) / samples
            out["backends"]["paraphrase"] = f"{card.judge.get('name')} judge, {samples} samples of " + ", ".join(
                f"'{p['label']}'" for p in paraphrases
            )
        out["metrics"]["retain shift"] = card.rates.get("max_retain_shift")
        definitions = card.definitions()
        out["backends"].update({k: definitions[k] for k in ("FID", "CLIP", "UA", "IRA", "CRA")})
        out["backends"]["forget"] = f"{card.judge.get('name')} judge, {card.rates['forget']['samples']} samples"
        out["backends"]["retain shift"] = "largest change of another concept's rate, in rate points"
        out["scorecard"] = {"sampling": card.sampling, "seconds": card.seconds}
    return out


def _score_gan(run: RunSpec, result, base, workdir: Path, context: RunContext, out: dict[str, Any]) -> dict[str, Any]:
    """A GAN run's numbers: UnlearnDiffAtk does not apply (no prompts); the GAN scorecard gives forget, PUL, the
    largest shift of another value's share, FD against the base and, with a CLIP backbone, γ."""
    from .gan_scorecard import gan_scorecard
    from .scorecard import ScorecardConfig

    if run.evaluations["attack"]["enabled"]:
        out["backends"]["ASR"] = "does not apply to a GAN (no prompts to attack)"
    card_spec = run.evaluations["scorecard"]
    if not card_spec["enabled"]:
        return out
    cfg = ScorecardConfig(**card_spec["config"])

    def card_progress(step: int, total: int, logs: Mapping[str, Any]) -> None:
        context.progress(step, total, {**logs, "stage": f"scorecard: {logs.get('stage', '')}"})

    card = gan_scorecard(
        result.apply(base),
        base,
        run.concept,
        cfg.gan_judge or card_spec["judge"],
        num_samples=cfg.gan_samples,
        fid_features=cfg.fid_features,
        clip=cfg.clip,
        names=(f"{run.method} ({run.concept}, seed {run.seed})", str(run.model)),
        callback=card_progress,
        output_dir=workdir / "scorecard",
    )
    worst = card.rates.get("worst_other")
    metrics = {
        "forget": card.forget_rate["erased"],
        "base forget": card.forget_rate["base"],
        "PUL": card.rates["pul"],
        "retain shift": abs(worst["shift"]) if worst else None,
        "kept": (card.rates.get("kept") or {}).get("share"),
        "FID": (card.distances or {}).get("erased_vs_base", {}).get("value"),
        "gamma": (card.gamma or {}).get("in_domain", {}).get("gamma") if card.gamma else None,
    }
    out["metrics"].update(metrics)
    judge = card.judge.get("name")
    samples = card.sampling["num_samples"]
    out["backends"].update(
        {
            "forget": f"{judge} judge, {samples} GAN samples (shared latents)",
            "PUL": f"(N_base − N_erased) / N_base, {judge} judge, {samples} shared latents",
            "retain shift": f"GANs: largest change of another value's share of the {judge} judge's top class",
            "kept": f"GANs: of the samples without the concept, the share whose top class on the concept's head "
            f"({judge} judge) is unchanged, same latents",
        }
    )
    if metrics["FID"] is not None:
        out["backends"]["FID"] = f"GANs: {card.distances['erased_vs_base']['metric']} between erased and base samples"
    if metrics["gamma"] is not None:
        backbone = card.gamma["in_domain"]["backbone"]
        out["backends"]["gamma"] = f"W1 of CLIP alignment scores, base vs erased ({backbone})"
    out["scorecard"] = {"sampling": card.sampling, "seconds": card.seconds}
    return out


def _run_attack(run, erased, base, spec: Mapping[str, Any], out: Path, images: Path, context: RunContext):
    """UnlearnDiffAtk on the run's prompt set, its target images drawn once per study (the image cache)."""
    from pipelines.data import generate_images_cached

    from .prompts import PromptSet, load_prompts
    from .rates import _call_defaults
    from .unlearndiffatk import AttackConfig, attack

    source = spec["prompts"].replace("{concept}", run.concept)
    prompt_set = load_prompts(source)
    rows = list(prompt_set.rows)[: spec["limit"]] if spec["limit"] else list(prompt_set.rows)
    prompt_set = PromptSet(rows, name=prompt_set.name)
    config = AttackConfig(**spec["config"])
    targets = None
    if config.method != "none":
        steps, _ = _call_defaults(base, config.num_inference_steps, None)
        targets = [None] * len(rows)
        for guidance in sorted({row.guidance for row in rows}):
            members = [i for i, row in enumerate(rows) if row.guidance == guidance]
            drawn = generate_images_cached(
                base,
                [rows[i].prompt for i in members],
                [int(rows[i].seed) if rows[i].seed is not None else 0 for i in members],
                images,
                num_inference_steps=steps,
                guidance_scale=guidance,
            ).images
            for j, i in enumerate(members):
                targets[i] = drawn[j].float() / 255

    def attack_progress(step: int, total: int, logs: Mapping[str, Any]) -> None:
        context.progress(step, total, {"stage": "attack", **logs})

    return attack(
        erased,
        prompt_set,
        spec["judge"],
        base=base,
        concept=run.concept,
        targets=targets,
        output_dir=out,
        config=config,
        callback=attack_progress,
    )


# ---------------------------------------------------------------- the study


def run_study(
    spec: StudySpec | str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike,
    *,
    executor: str = "local",
    max_parallel: int | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    redo: Sequence[str] = (),
    callback: EventCallback | None = None,
    runner=run_one,
) -> StudyResult:
    """Validate a study, run its unfinished runs on an executor, and write the leaderboard.

    Args:
        spec: a job file (YAML/JSON), its mapping, or a ``StudySpec``.
        output_dir: the study folder; re-running resumes (finished runs are skipped).
        executor (`str`, defaults to `"local"`): ``local``, ``slurm`` or ``ray`` (see ``pipelines.jobs``).
        max_parallel (`int`, *optional*): runs at once.
        dry_run (`bool`, defaults to `False`): validate and plan only.
        retry_failed (`bool`, defaults to `False`): redo runs that failed before.
        redo (`list[str]`, *optional*): names or shell patterns of finished runs to run again.
        callback (*optional*): ``callback(event)`` for every progress event.
        runner (*optional*): the runner (default :func:`run_one`); a picklable module-level function.

    Returns:
        ``pipelines.jobs.StudyResult``; the leaderboard is in ``output_dir`` (not for a dry run).
    """
    spec, _ = validate_study(spec)
    result = run_jobs(
        spec,
        output_dir,
        runner=runner,
        executor=executor,
        resolve=resolve_config,
        max_parallel=max_parallel,
        dry_run=dry_run,
        retry_failed=retry_failed,
        redo=redo,
        callback=callback,
    )
    if not dry_run:
        write_leaderboard(output_dir)
    return result


# ---------------------------------------------------------------- the leaderboard


@dataclasses.dataclass
class Leaderboard:
    """Rows of mean and spread over seeds, one per (model, method, concept), in the study's plan order.

    Args:
        rows (`list[dict]`): ``{"model", "method", "concept", "runs", "seeds", column: {"mean", "std", "n"}}``.
        backends (`dict[str, list[str]]`): per column, what measured it (judge, features, backbone, schedule).
        failed (`dict[str, str]`): runs that failed, with their one-line errors.
        stale (`list[str]`): finished runs left out because the study's plan no longer holds them (their config
            changed since they ran; see :func:`pipelines.jobs.planned_records`).
    """

    rows: list[dict[str, Any]]
    backends: dict[str, list[str]]
    failed: dict[str, str]
    stale: list[str] = dataclasses.field(default_factory=list)

    def to_markdown(self, title: str = "Leaderboard") -> str:
        lines = [f"# {title}", ""]
        lines += [
            "Mean ± standard deviation over seeds (`n` runs per row). Rates are percentages: forget is how often "
            "the erased model still draws the concept, paraphrase the same for the concept asked in other words, "
            "retain shift the largest change of another concept's rate (points); pre-ASR is the attack success rate "
            "without attack, ASR with UnlearnDiffAtk (pre-attack successes included); UA, IRA and CRA as "
            "UnlearnCanvas defines them; erase time is the erasure's wall seconds, time the whole run's (erase, "
            "attack and scorecard), memory its peak in MB. '–' means not measured.",
            "",
        ]
        gan_rows = [row for row in self.rows if row.get("sampler") == "stylegan2"]
        diffusion_rows = [row for row in self.rows if row.get("sampler") != "stylegan2"]
        for rows, columns, heading in (
            (diffusion_rows, TABLE_COLUMNS, None),
            (gan_rows, GAN_TABLE_COLUMNS, "GAN methods (shared latents; FID: the FD of erased vs base samples)"),
        ):
            if not rows:
                continue
            if heading:
                lines += ["", f"### {heading}", ""]
            head = ["method", "concept", "n", *columns]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for row in rows:
                cells = [row["method"], row["concept"], str(row["runs"])]
                cells += [_cell(row.get(column), column) for column in columns]
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "## Backends", ""]
        for column, names in self.backends.items():
            lines.append(f"- **{column}**: " + "; ".join(names))
        models = sorted({row["model"] for row in self.rows})
        lines += ["", f"Base model(s): {', '.join(f'`{m}`' for m in models)}."]
        if self.failed:
            lines += ["", "## Failed runs", ""]
            lines += [f"- `{name}`: {error}" for name, error in self.failed.items()]
        if self.stale:
            lines += ["", "## Left out", ""]
            lines += [
                "Finished runs whose config is not the study's plan any more (a preset or a default changed since "
                "they ran, so the same point ran again under a new name); they stay in `runs/` and `results.jsonl`:",
                "",
            ]
            lines += [f"- `{name}`" for name in self.stale]
        lines += ["", "![forget rate against retain shift](forget_vs_retain.png)", "", "![ASR](asr.png)", ""]
        lines += ["## The papers' claims", "", claims_markdown(self.claims()), ""]
        return "\n".join(lines)

    def claims(self) -> list[ClaimCheck]:
        """Each method paper's central claim checked against these rows (:func:`eval.claims.check_claims`)."""
        return check_claims(self.rows)

    def to_json(self) -> str:
        """Rows, backends, failed runs and the claims' verdicts, as JSON."""
        claims = [check.to_dict() for check in self.claims()]
        payload = {"rows": self.rows, "backends": self.backends, "failed": self.failed, "claims": claims}
        if self.stale:
            payload["stale"] = self.stale
        return json.dumps(payload, indent=1) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        extra = EXTRA_COLUMNS
        writer.writerow(
            ["model", "method", "concept", "n", "seeds"]
            + [f"{c}{suffix}" for c in (*LEADERBOARD_COLUMNS, *extra) for suffix in ("", " std")]
        )
        for row in self.rows:
            values = []
            for column in (*LEADERBOARD_COLUMNS, *extra):
                stat = row.get(column)
                values += [_csv(stat, "mean"), _csv(stat, "std")]
            seeds = " ".join(map(str, row["seeds"]))
            writer.writerow([row["model"], row["method"], row["concept"], row["runs"], seeds] + values)
        return buffer.getvalue()

    def plot(self, output_dir: str | os.PathLike) -> list[Path]:
        """``forget_vs_retain.png`` (forget rate against retain shift, per method) and ``asr.png`` (ASR bars
        without and with the attack)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(output_dir)
        paths = []
        methods = list(dict.fromkeys(row["method"] for row in self.rows))
        colours = plt.get_cmap("tab10")
        fig, ax = plt.subplots(figsize=(5.5, 4), dpi=100)
        for m, method in enumerate(methods):
            rows = [r for r in self.rows if r["method"] == method and r.get("forget") and r.get("retain shift")]
            if not rows:
                continue
            xs = [100 * r["retain shift"]["mean"] for r in rows]
            ys = [100 * r["forget"]["mean"] for r in rows]
            xerr = [100 * (r["retain shift"]["std"] or 0) for r in rows]
            yerr = [100 * (r["forget"]["std"] or 0) for r in rows]
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", color=colours(m), label=method, capsize=3)
            for x, y, r in zip(xs, ys, rows):
                ax.annotate(r["concept"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("retain shift (largest change elsewhere, points)")
        ax.set_ylabel("forget rate after erasure (%)")
        ax.set_title("Forget rate against retain shift (lower-left is better)", fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save_figure(fig, out / "forget_vs_retain.png"))
        plt.close(fig)

        rows = [r for r in self.rows if r.get("ASR")]
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 1.5), 3.8), dpi=100)
        xs = list(range(len(rows)))
        for offset, column, colour, name in (
            (-0.2, "pre-ASR", "#9e9e9e", "without attack (pre-ASR)"),
            (0.2, "ASR", "#d9534f", "with UnlearnDiffAtk (ASR)"),
        ):
            means = [100 * (r[column]["mean"] if r.get(column) else 0) for r in rows]
            errs = [100 * ((r[column]["std"] or 0) if r.get(column) else 0) for r in rows]
            ax.bar([x + offset for x in xs], means, 0.4, yerr=errs, color=colour, label=name, capsize=3)
        ax.set_xticks(xs, [f"{r['method']}\n{r['concept']}" for r in rows], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("attack success rate (%)")
        ax.set_title("ASR without and with the attack", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(_save_figure(fig, out / "asr.png"))
        plt.close(fig)
        return paths


def _save_figure(fig, path: Path) -> Path:
    temp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(temp)
    os.replace(temp, path)
    return path


def _cell(stat: Mapping[str, Any] | None, column: str) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    decimals = {"FID": 4, "CLIP": 4, "time": 1, "erase time": 1, "gamma": 3}
    scale, digits = (100, 1) if column in RATE_COLUMNS else (1, decimals.get(column, 0))
    mean = scale * stat["mean"]
    fixed = column in RATE_COLUMNS or column in ("time", "erase time", "memory")
    text = f"{mean:.{digits}f}" if fixed else f"{mean:.{digits}g}"
    if stat.get("std") is not None:
        std = scale * stat["std"]
        text += f" ± {std:.{digits}f}" if fixed else f" ± {std:.2g}"
    return text


def _csv(stat: Mapping[str, Any] | None, key: str) -> str:
    if not stat or stat.get(key) is None:
        return ""
    return f"{stat[key]:.6g}"


def _stat(values: Sequence[float | None]) -> dict[str, Any] | None:
    numbers = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not numbers:
        return None
    mean = sum(numbers) / len(numbers)
    std = None
    if len(numbers) > 1:  # the sample standard deviation over seeds
        std = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))
    return {"mean": mean, "std": std, "n": len(numbers)}


def build_leaderboard(records: Sequence[Mapping[str, Any]], failed: Mapping[str, str] | None = None) -> Leaderboard:
    """Group ``results.jsonl`` lines by (model, method label, concept), in the order given (``write_leaderboard``
    gives the plan's, :func:`pipelines.jobs.planned_records`), with mean and spread."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        key = (record["model"], record.get("label") or record["method"], record["concept"])
        groups.setdefault(key, []).append(record)
    rows = []
    backends: dict[str, list[str]] = {}
    for (model, method, concept), members in groups.items():
        row: dict[str, Any] = {
            "model": model,
            "method": method,
            "concept": concept,
            "runs": len(members),
            "seeds": [m.get("seed") for m in members],
            "sampler": members[0].get("sampler"),
        }
        for column in (*LEADERBOARD_COLUMNS, *EXTRA_COLUMNS):
            if column == "time":
                values = [m.get("seconds") for m in members]
            elif column == "erase time":
                values = [m.get("erase", {}).get("wall_seconds") for m in members]
            elif column == "memory":
                values = [m.get("peak_memory_mb") for m in members]
            else:
                values = [m.get("metrics", {}).get(column) for m in members]
            row[column] = _stat(values)
        rows.append(row)
        for m in members:
            named = dict(m.get("backends", {}))
            named["time"] = "wall seconds of the whole run (erase, save, attack, scorecard), " + (
                f"{m['hardware'].get('device')} on {m['hardware'].get('host')}, "
                f"{m['hardware'].get('torch_threads')} torch threads"
                if m.get("hardware")
                else "machine unknown"
            )
            named["memory"] = f"{m.get('peak_memory_kind', 'peak memory')}, MB"
            if m.get("erase", {}).get("wall_seconds") is not None:
                named["erase time"] = "wall seconds of the erasure alone (the method's own measurement)"
            for column, text in named.items():
                if column in (*LEADERBOARD_COLUMNS, *EXTRA_COLUMNS) and text not in backends.get(column, []):
                    backends.setdefault(column, []).append(text)
    order = [c for c in (*LEADERBOARD_COLUMNS, *EXTRA_COLUMNS) if c in backends]
    return Leaderboard(rows=rows, backends={c: backends[c] for c in order}, failed=dict(failed or {}))


def write_leaderboard(output_dir: str | os.PathLike) -> Leaderboard:
    """Write ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.json`` (with the papers' claims checked),
    ``forget_vs_retain.png`` and ``asr.png`` for a study folder.

    Reads the records of the study's current plan from ``results.jsonl`` (:func:`pipelines.jobs.planned_records`:
    runs whose config has changed since are listed as left out, never averaged in), ``study.json`` for the title and
    ``runs/*/error.json`` for the plan's failed runs; every file is written to a temporary name and renamed.
    """
    out = Path(output_dir)
    if not (out / RESULTS_FILE).is_file() and not (out / "study.json").is_file():
        raise ConfigError(f"{out} holds no study (no results.jsonl); run one with: erasure-studio run JOBS.yaml")
    records, stale = planned_records(out)
    plan = study_plan(out)
    failed = {}
    for error in sorted((out / RUNS_DIR).glob(f"*/{ERROR_FILE}")):
        in_plan = plan is None or error.parent.name.rsplit("-", 1)[-1] in plan
        if in_plan and not (error.parent / "done.json").exists():
            failed[error.parent.name] = json.loads(error.read_text()).get("error", "failed")
    board = build_leaderboard(records, failed)
    board.stale = stale
    title = "Leaderboard"
    if (out / "study.json").is_file():
        title = f"Leaderboard: {json.loads((out / 'study.json').read_text())['identity'].get('name', '')}"
    atomic_write_text(out / "leaderboard.md", board.to_markdown(title))
    atomic_write_text(out / "leaderboard.csv", board.to_csv())
    atomic_write_text(out / "leaderboard.json", board.to_json())
    board.plot(out)
    return board


__all__ = [
    "EXTRA_COLUMNS",
    "LEADERBOARD_COLUMNS",
    "TABLE_COLUMNS",
    "Leaderboard",
    "build_leaderboard",
    "resolve_config",
    "run_one",
    "run_study",
    "validate_study",
    "write_leaderboard",
]
