"""The scorecard: one page that compares an erased model with its base on every axis the field reports.

``scorecard(model, base, concept, judge)`` samples both models on the same prompts and seeds and measures:

- **forget rate**: how often the judge still finds the concept in samples of the concept's prompts, and of
  paraphrased prompts (toy world: the concept's synonyms, e.g. "pentagram" for "star");
- **retain rates**: the same rate for every other concept of its kind ("circle", "square", ...);
- **UA / IRA / CRA** (UnlearnCanvas), from the same samples (:mod:`eval.accuracy`);
- **CLIP** score on utility prompts, in both conventions (:mod:`eval.clip_score`);
- **FID** / FD of the utility samples against the base model's samples and against reference images (toy world:
  fresh renders of the same scenes) (:mod:`eval.fid`);
- **pre-ASR / ASR** copied from an attack report (``eval.attack``'s JSON), when one is given.

Utility prompts are the retain prompts in the toy world (prompts that do not ask for the erased concept), and a
captions file for real models (``eval/data/captions_small.csv`` or ``captions_utility.csv``, or COCO-10k's
``coco_10k.csv`` when you have it). :class:`Scorecard` writes JSON, Markdown with the public leaderboards' column
names (pre-ASR, ASR, FID, CLIP, UA, IRA, CRA) and a definitions section, a before/after sample grid and a bar chart.

Settings are a :class:`ScorecardConfig` (or its fields as keywords). The command line, with one flag per field:
``erasure-studio eval MODEL_OR_ARTIFACT [--base ...] [--judge toy] [--attack_report FILE]`` (``ui/commands/eval.py``).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.errors import ConfigError, check_options

from .judges import Judge, load_judge

logger = logging.getLogger(__name__)

UTILITY_CAPTIONS = "captions_small"  # eval/data/captions_small.csv, read with eval.prompts.load_prompts
DEFAULT_SEEDS = 2
REFERENCE_SEED = 20_000  # seed of the toy world's reference renders (fixed so reports are reproducible)
LEADERBOARD_COLUMNS = ("pre-ASR", "ASR", "FID", "CLIP", "UA", "IRA", "CRA")


# ---------------------------------------------------------------- the scorecard object


@dataclass
class Scorecard:
    """The comparison of an erased model with its base. Build it with :func:`scorecard`.

    Args:
        concept (`str`): the erased concept.
        kind (`str`): its domain (``object``, ``colour``, ``style`` in the toy world; ``concept`` otherwise).
        models (`dict`): ``{"base": name, "erased": name}``.
        judge (`dict`): the judge's description.
        sampling (`dict`): seeds, steps, guidance scale and scheduler used for every sample.
        rates (`dict`): forget, paraphrase and retain rates of both models, with sample counts.
        accuracy (`dict`): ``{"base": AccuracyResult dict, "erased": ...}`` (UA / IRA / CRA).
        clip (`dict`, *optional*): CLIP scores of both models in both conventions, on the utility prompts.
        distances (`dict`, *optional*): Frechet (and kernel) distances between sample sets.
        attack (`dict`, *optional*): pre-ASR and ASR copied from an attack report.
        seconds (`float`): wall time of the evaluation.
        samples (`dict`, *optional*): images for the before/after grid (in memory only, not in the JSON).
    """

    concept: str
    kind: str
    models: dict[str, str]
    judge: dict[str, Any]
    sampling: dict[str, Any]
    rates: dict[str, Any]
    accuracy: dict[str, Any]
    clip: dict[str, Any] | None = None
    distances: dict[str, Any] | None = None
    attack: dict[str, Any] | None = None
    seconds: float = 0.0
    samples: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    # -------------------------------------------------- numbers

    @property
    def forget_rate(self) -> dict[str, float]:
        """``{"base": rate, "erased": rate}`` on the concept's own prompts."""
        return {"base": self.rates["forget"]["base"], "erased": self.rates["forget"]["erased"]}

    def _fid_entry(self, model: str) -> dict[str, Any] | None:
        if not self.distances:
            return None
        if self.distances.get(f"{model}_vs_reference"):
            return self.distances[f"{model}_vs_reference"]
        if model == "erased":
            return self.distances.get("erased_vs_base")
        return None

    def leaderboard(self) -> list[dict[str, Any]]:
        """One row per model with the leaderboards' columns (rates as fractions; ``None`` where not measured)."""
        rows = []
        for model in ("base", "erased"):
            accuracy = self.accuracy.get(model) or {}
            fid = self._fid_entry(model)
            clip = (self.clip or {}).get(model, {}).get("advunlearn")
            attack = self.attack if model == "erased" else None
            rows.append(
                {
                    "model": model,
                    "pre-ASR": attack["pre_asr"] if attack else None,
                    "ASR": attack["asr"] if attack else None,
                    "FID": fid["value"] if fid else None,
                    "CLIP": clip["value"] if clip else None,
                    "UA": accuracy.get("ua"),
                    "IRA": accuracy.get("ira"),
                    "CRA": accuracy.get("cra"),
                }
            )
        return rows

    # -------------------------------------------------- outputs

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it would deep-copy the in-memory sample images only to drop them.
        data = copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self) if f.name != "samples"})
        data["leaderboard"] = self.leaderboard()
        data["definitions"] = self.definitions()
        return data

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Scorecard:
        """Read a saved ``scorecard.json`` (or the folder holding it) back; sample images are not saved in it."""
        path = Path(path)
        data = json.loads((path / "scorecard.json" if path.is_dir() else path).read_text())
        names = {f.name for f in fields(cls)} - {"samples"}
        return cls(**{k: v for k, v in data.items() if k in names})

    def definitions(self) -> dict[str, str]:
        """What each leaderboard column means in this scorecard (backend, convention and sample counts included)."""
        from .accuracy import DEFINITIONS

        acc = self.accuracy.get("erased") or {}
        counts = acc.get("counts", {})
        attack_source = f" (from {self.attack['source']})" if self.attack and self.attack.get("source") else ""
        out = {
            "pre-ASR": "attack success rate without attack: share of the attack's prompts whose sample from the "
            f"erased model still shows the concept{attack_source}",
            "ASR": "attack success rate of the UnlearnDiffAtk adversarial-prompt attack: share of prompts whose "
            f"erased-model sample shows the concept with or without attack (pre-attack successes included)"
            f"{attack_source}",
        }
        if self.attack is None:
            out["pre-ASR"] += "; not measured here (pass an attack report)"
            out["ASR"] += "; not measured here (pass an attack report)"
        fid_ref = (self.distances or {}).get("erased_vs_reference")
        fid_base = (self.distances or {}).get("erased_vs_base")
        if fid_ref:
            out["FID"] = (
                f"{fid_ref['metric']}: Frechet distance of each model's utility samples to {fid_ref['num_real']} "
                f"reference images ({self.distances.get('reference', 'reference images')}); {fid_ref['features']}, "
                f"{fid_ref['feature_dim']}-d, {fid_ref['num_fake']} samples per model; "
                + (
                    "comparable with published FID"
                    if fid_ref["comparable_to_published"]
                    else "NOT comparable with published FID"
                )
            )
        elif fid_base:
            out["FID"] = (
                f"{fid_base['metric']}: Frechet distance of the erased model's utility samples to the base model's "
                f"({fid_base['num_fake']} vs {fid_base['num_real']}); {fid_base['features']}, "
                f"{fid_base['feature_dim']}-d; not comparable with published FID (no reference images)"
            )
        else:
            out["FID"] = "not measured"
        clip = (self.clip or {}).get("erased", {}).get("advunlearn")
        if clip:
            out["CLIP"] = (
                f"mean cosine similarity of utility samples and their prompts (AdvUnlearn's convention, logits/100), "
                f"backbone {clip['backbone']}, {clip['num_samples']} samples per model; torchmetrics' "
                "max(100 x cosine, 0) is in the details"
            )
        else:
            out["CLIP"] = "not measured"
        out["UA"] = f"{DEFINITIONS['UA']}; {counts.get('UA', 0)} images"
        out["IRA"] = f"{DEFINITIONS['IRA']}; {counts.get('IRA', 0)} images"
        out["CRA"] = f"{DEFINITIONS['CRA']}; {counts.get('CRA', 0)} judgements" + (
            "" if acc.get("cra") is not None else " (not measured: needs prompts labelled in another domain)"
        )
        return out

    def to_markdown(self) -> str:
        """The scorecard as Markdown: leaderboard table, definitions, rates, CLIP and distance details."""
        s = self.sampling
        lines = [
            f"# Scorecard: '{self.concept}' erased",
            "",
            f"Base `{self.models['base']}`, erased `{self.models['erased']}`; judge `{self.judge.get('name')}`. "
            f"{s['seeds']} seed(s) per prompt, {s['scheduler']} {s['num_inference_steps']} steps, guidance "
            f"{s['guidance_scale']}; the same prompts and seeds for both models. {self.seconds:.0f} s.",
            "",
            "| model | " + " | ".join(LEADERBOARD_COLUMNS) + " |",
            "|---|" + "---|" * len(LEADERBOARD_COLUMNS),
        ]
        for row in self.leaderboard():
            cells = [
                _pct(row["pre-ASR"]),
                _pct(row["ASR"]),
                _num(row["FID"], 4),
                _num(row["CLIP"], 4),
                _pct(row["UA"]),
                _pct(row["IRA"]),
                _pct(row["CRA"]),
            ]
            name = self.models[row["model"]]
            short = Path(name.split(" (")[0]).name or name  # full names are in the line above the table
            suffix = name[len(name.split(" (")[0]) :]
            lines.append(f"| {row['model']}: {short}{suffix} | " + " | ".join(cells) + " |")
        lines += ["", "### Definitions", ""]
        lines += [f"- **{name}**: {text}." for name, text in self.definitions().items()]
        lines += ["- Percentages are shares of judged images; '–' means not measured.", ""]

        lines += [
            "## Forget and retain rates",
            "",
            "Share of samples in which the judge finds the prompt's concept.",
            "",
        ]
        lines += ["| prompts | concept | base | erased | change | samples |", "|---|---|---|---|---|---|"]
        f = self.rates["forget"]
        lines.append(_rate_row("forget", f["concept"], f))
        for p in self.rates.get("paraphrases", []):
            lines.append(_rate_row("paraphrase", p["label"], p))
        for name, r in self.rates.get("retain", {}).items():
            lines.append(_rate_row("retain", name, r))
        lines.append("")

        if self.clip:
            lines += [
                "## CLIP score",
                "",
                f"On {self.clip['num_prompts']} utility prompts ({self.clip['prompts']}).",
                "",
            ]
            lines += ["| model | AdvUnlearn (mean cosine) | torchmetrics (max(100·cos, 0)) | backbone | samples |"]
            lines += ["|---|---|---|---|---|"]
            for model in ("base", "erased"):
                c = self.clip[model]
                adv, tm = c["advunlearn"], c["torchmetrics"]
                lines.append(
                    f"| {model} | {adv['value']:.4f} | {tm['value']:.2f} | {adv['backbone']} | {adv['num_samples']} |"
                )
            lines += ["", f"Backbone note: {self.clip['backbone_note']}.", ""]

        if self.distances:
            lines += ["## Distances", "", f"Reference images: {self.distances.get('reference', 'none')}.", ""]
            lines += ["| comparison | metric | value | reference images | compared images | features |"]
            lines += ["|---|---|---|---|---|---|"]
            for key, label in (
                ("erased_vs_base", "erased vs base samples"),
                ("base_vs_reference", "base vs reference"),
                ("erased_vs_reference", "erased vs reference"),
            ):
                for family in ("", "kid_"):
                    d = self.distances.get(family + key)
                    if d:
                        spread = f" ± {d['std']:.3g}" if d.get("std") is not None else ""
                        lines.append(
                            f"| {label} | {d['metric']} | {d['value']:.4g}{spread} | {d['num_real']} | "
                            f"{d['num_fake']} | {d['features']} ({d['feature_dim']}-d) |"
                        )
            notes = {d["note"] for k, d in self.distances.items() if isinstance(d, dict) and d.get("note")}
            lines += [""] + [f"- {n}." for n in sorted(notes)] + [""]

        extra = {k: v for k, v in (self.attack or {}).items() if k not in ("pre_asr", "asr")}
        if extra:
            lines += ["## Attack", "", "```json", json.dumps(extra, indent=2), "```", ""]
        lines += ["![before and after](samples.png)", "", "![forget and retain rates](rates.png)", ""]
        return "\n".join(lines)

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write ``scorecard.json``, ``scorecard.md``, ``samples.png`` (before/after grid) and ``rates.png``."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scorecard.json").write_text(self.to_json())
        (out / "scorecard.md").write_text(self.to_markdown())
        if self.samples:
            from pipelines.images import before_after_grid

            s = self.samples
            title = f"'{self.concept}': base (left) vs erased (right), same seeds"
            before_after_grid(s["before"], s["after"], s["prompts"], s["seeds"], title=title).save(out / "samples.png")
        self.plot_rates(out / "rates.png")
        return out

    def plot_rates(self, path: str | os.PathLike) -> Path:
        """Bar chart of forget, paraphrase and retain rates, base vs erased."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        f = self.rates["forget"]
        labels = [f"{f['concept']}\n(erased)"]
        base = [f["base"]]
        erased = [f["erased"]]
        for p in self.rates.get("paraphrases", []):
            labels.append(f"{p['label']}\n(paraphrase)")
            base.append(p["base"])
            erased.append(p["erased"])
        for name, r in self.rates.get("retain", {}).items():
            labels.append(name)
            base.append(r["base"])
            erased.append(r["erased"])
        x = np.arange(len(labels))
        fig, ax = plt.subplots(figsize=(max(5.0, 0.75 * len(labels) + 1.5), 3.6), dpi=100)
        ax.bar(x - 0.2, base, 0.4, label="base", color="#9e9e9e")
        ax.bar(x + 0.2, erased, 0.4, label="erased", color="#d9534f")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("judge finds the concept")
        ax.set_title(f"'{self.concept}' erased: forget and retain rates ({self.judge.get('name')} judge)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path)
        plt.close(fig)
        return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _rate_row(group: str, name: str, r: Mapping[str, Any]) -> str:
    change = 100 * (r["erased"] - r["base"])
    return f"| {group} | {name} | {_pct(r['base'])} | {_pct(r['erased'])} | {change:+.1f} pts | {r['samples']} |"


# ---------------------------------------------------------------- inputs


def read_attack_report(report: Any) -> dict[str, Any] | None:
    """pre-ASR and ASR from an attack report: an ``AttackReport``, a dict, or the path to its JSON (or its folder).

    The keys ``pre_asr`` and ``asr`` are read at the top level or under ``summary``/``metrics``; fractions in [0, 1]
    are expected, and values in (1, 100] are read as percentages. The attack's concept, method, prompt count and
    judge are kept for the report.
    """
    if report is None:
        return None
    source = None
    if isinstance(report, (str, os.PathLike)):
        path = Path(report).expanduser()
        if path.is_dir():
            path = path / "report.json"  # the folder eval.attack writes
        if not path.is_file():
            raise ConfigError(f"attack report {path} does not exist; pass the report.json that the attack wrote")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"attack report {path} is not valid JSON ({err.msg} at line {err.lineno})") from err
        source = str(path)
    elif isinstance(report, Mapping):
        data = dict(report)
    elif callable(getattr(report, "summary", None)):
        data = report.summary()
    elif callable(getattr(report, "to_dict", None)):
        data = report.to_dict()
    elif hasattr(report, "pre_asr") and hasattr(report, "asr"):
        data = {"pre_asr": report.pre_asr, "asr": report.asr}
    else:
        raise ConfigError(f"cannot read an attack report from a {type(report).__name__}; pass a dict or a JSON path")
    if not isinstance(data, Mapping):
        raise ConfigError("an attack report must be a JSON object with the keys 'pre_asr' and 'asr'")
    candidates = (data, data.get("summary"), data.get("metrics"))
    found = next((d for d in candidates if isinstance(d, Mapping) and "pre_asr" in d and "asr" in d), None)
    if found is None:
        where = f" {source}" if source else ""
        raise ConfigError(f"attack report{where} lacks the keys 'pre_asr' and 'asr'")
    out: dict[str, Any] = {}
    for key in ("pre_asr", "asr"):
        try:
            value = float(found[key])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"attack report value {key}={found[key]!r} is not a number") from err
        if not 0 <= value <= 100:
            raise ConfigError(f"attack report value {key}={value} is not a rate (a fraction in [0, 1])")
        out[key] = value / 100 if value > 1 else value
    for key in ("concept", "attack", "method", "schedule", "n_prompts", "num_prompts", "judge", "model"):
        if key in data:
            out[key] = data[key]
    if source:
        out["source"] = source
    return out


def load_captions(source: str | os.PathLike | None = None, *, limit: int | None = None) -> list[tuple[str, int]]:
    """Utility captions ``[(prompt, seed), ...]`` for CLIP score and FID on real models.

    Args:
        source: ``None`` for the bundled ``captions_small`` set (100 everyday captions written for this project), or
            anything :func:`eval.prompts.load_prompts` reads: a prompt CSV with a ``prompt`` column and optional
            ``evaluation_seed`` (COCO-10k's ``coco_10k.csv`` works as is), or a bundled set's name.
        limit (`int`, *optional*): keep the first ``limit`` captions.
    """
    from .prompts import load_prompts

    prompt_set = load_prompts(source if source is not None else UTILITY_CAPTIONS)
    captions = [(row.prompt, index if row.seed is None else row.seed) for index, row in enumerate(prompt_set)]
    captions = [(prompt, seed) for prompt, seed in captions if prompt.strip()]
    if not captions:
        raise ConfigError(f"the prompt set {prompt_set.name!r} holds no prompts")
    return captions[:limit] if limit else captions


def _prompts_option(value: Sequence[str] | str | os.PathLike | None) -> list[str] | None:
    """A prompt list from a list, or from a text file, a CSV's ``prompt`` column or a bundled set's name."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        from .prompts import load_prompts

        return load_prompts(value).prompts
    return list(value)


def _read_retain_file(path: str | os.PathLike) -> dict[str, list[str]]:
    from .prompts import load_prompts

    sets: dict[str, list[str]] = {}
    for row in load_prompts(path):
        if not row.concept:
            raise ConfigError(f"retain prompts file {path} needs a 'concept' column naming each prompt's concept")
        sets.setdefault(row.concept, []).append(row.prompt)
    return sets


def load_reference_images(source: Any, size: int | None = None) -> torch.Tensor:
    """Reference images from a tensor, a list of PIL images, or a folder of PNG/JPEG files (resized to ``size``)."""
    from PIL import Image

    from .fid import as_image_batch

    if isinstance(source, (str, os.PathLike)):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"reference images folder {folder} does not exist")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        if not files:
            raise ConfigError(f"reference images folder {folder} holds no PNG or JPEG files")
        source = [Image.open(p).convert("RGB") for p in files]
    if not isinstance(source, torch.Tensor):
        source = list(source)
        if size is not None:
            source = [im.resize((size, size), Image.Resampling.BICUBIC) for im in source]
    return as_image_batch(source, "reference images")


def toy_reference_renders(labels: Sequence[Mapping[str, str]], seed: int = REFERENCE_SEED) -> torch.Tensor:
    """Fresh toy-world renders, one per label set: the labelled attributes kept, the others drawn at random."""
    from pipelines.toy.world import BACKGROUNDS, COLOURS, OBJECTS, STYLES, Scene, render

    rng = np.random.default_rng(seed)
    arrays = []
    for lab in labels:
        scene = Scene(
            object=lab.get("object") or OBJECTS[int(rng.integers(len(OBJECTS)))],
            colour=lab.get("colour") or COLOURS[int(rng.integers(len(COLOURS)))],
            style=lab.get("style") or STYLES[int(rng.integers(len(STYLES)))],
            background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        )
        arrays.append(np.asarray(render(scene, rng), dtype=np.float32) / 255)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- building a scorecard


def _pipeline_name(pipe: Any, fallback: str) -> str:
    source = getattr(pipe, "studio_source", None) or {}
    return str(source.get("name_or_path") or fallback)


def _sampling_settings(pipe: Any, num_inference_steps: int | None, guidance_scale: float | None, seeds: int):
    """The sampler settings every sample uses, with the pipeline's own defaults filled in (so reports say them)."""
    parameters = inspect.signature(type(pipe).__call__).parameters

    def default(name: str) -> Any:
        parameter = parameters.get(name)
        return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default

    return {
        "seeds": seeds,
        "num_inference_steps": num_inference_steps or default("num_inference_steps"),
        "guidance_scale": guidance_scale if guidance_scale is not None else default("guidance_scale"),
        "scheduler": type(pipe.scheduler).__name__,
        "safety_checker": getattr(pipe, "safety_checker", None) is not None,
    }


def _open(
    model: Any, base: Any, device: str | None, model_type: str | None = None
) -> tuple[Any, Any, str, str, dict[str, Any] | None]:
    """(erased model, base model, erased name, base name, artifact manifest) from models or paths; ``model_type``
    (``"stylegan2"`` for the GAN path) says how to read a base given by name."""
    from pipelines import open_model
    from pipelines.artifacts import MANIFEST, read_manifest

    manifest = None
    erased_name = base_name = None
    if isinstance(base, (str, os.PathLike)):
        base_name = str(base)
        base = open_model(base, model_type=model_type, device=device)
    if isinstance(model, (str, os.PathLike)):
        erased_name = str(model)
        path = Path(model)
        if path.is_dir() and (path / MANIFEST).exists():
            manifest = read_manifest(path)
            if base is None:
                base_name = manifest["base_model"].get("name_or_path")
                if not base_name:
                    raise ConfigError(f"artifact {path} does not name its base model; pass base=")
                base = open_model(base_name, model_type=model_type, device=device)
        model = open_model(model, base=base, model_type=model_type, device=device or "cpu")
    if base is None:
        raise ConfigError("pass the base model (a pipeline or a model name) to compare the erased model with")
    erased_name = erased_name or "erased model"
    base_name = base_name or _pipeline_name(base, "base model")
    return model, base, erased_name, base_name, manifest


def _generate_sets(
    pipe, sets: Mapping[str, Sequence[str]], judge: Judge, seeds: int, sampler: dict[str, Any], cache_dir=None
):
    """Rates and images per set, through eval.rates.concept_rates; images keyed by (prompt, seed)."""
    from .rates import concept_rates

    out = concept_rates(
        pipe,
        {k: list(v) for k, v in sets.items()},
        judge,
        seeds=seeds,
        num_inference_steps=sampler["num_inference_steps"],
        guidance_scale=sampler["guidance_scale"],
        return_images=True,
        cache_dir=cache_dir,
    )
    keys = [(name, prompt, seed) for name in sets for prompt in sets[name] for seed in range(seeds)]
    if len(keys) != len(out["images"]):  # concept_rates samples prompt-major with seeds 0..seeds-1
        raise RuntimeError("concept_rates returned an unexpected number of images")
    return out["rates"], keys, out["images"]


def _is_gan(model: Any) -> bool:
    """A ``GANBundle``, or an artifact folder whose manifest says it samples with a StyleGAN2."""
    from pipelines.artifacts import MANIFEST, read_manifest
    from pipelines.gan import GANBundle

    if isinstance(model, GANBundle):
        return True
    if isinstance(model, (str, os.PathLike)) and (Path(model) / MANIFEST).is_file():
        return read_manifest(Path(model)).get("sampler") == "stylegan2"
    return False


def _gan_scorecard(model: Any, base: Any, concept: str, judge: Any, cfg: ScorecardConfig, callback: Any):
    """The GAN path of :func:`scorecard`: open both generators, then :func:`eval.gan_scorecard.gan_scorecard`."""
    from .gan_scorecard import gan_scorecard

    model, base, erased_name, base_name, _ = _open(model, base, cfg.device, model_type="stylegan2")
    paraphrases = cfg.paraphrases
    if isinstance(paraphrases, (str, os.PathLike)):
        paraphrases = _prompts_option(paraphrases)
    elif isinstance(paraphrases, Mapping):
        paraphrases = [p for group in paraphrases.values() for p in group]
    return gan_scorecard(
        model,
        base,
        concept,
        judge,
        num_samples=cfg.gan_samples,
        fid_features=cfg.fid_features,
        clip=cfg.clip,
        prompts=_prompts_option(cfg.prompts),
        paraphrases=paraphrases,
        names=(erased_name, base_name),
        callback=callback,
        output_dir=cfg.output_dir,
    )


@dataclass
class ScorecardConfig:
    """Settings of :func:`scorecard`. Every field is also a flag of ``erasure-studio eval`` (generated with
    ``transformers.HfArgumentParser``; on the command line, prompt sets, backbones and reports are paths or names).

    Args:
        prompts (*optional*): the concept's prompts (forget rate, UA): a list, or a text file, a CSV with a ``prompt``
            column or a bundled set's name. Toy world: "a {colour} star" over every colour (the grid of
            :func:`eval.rates.toy_prompt_sets`).
        paraphrases (*optional*): prompts that ask for the concept in other words: a list, ``{label: prompts}``, or a
            file. Toy world: one set per synonym ("pentagram").
        retain (*optional*): ``{concept: prompts}`` of concepts that must survive (retain rates, IRA), or a CSV with
            the columns ``concept`` and ``prompt``. Toy world: every other value of the concept's kind.
        clip: CLIP backbone for the CLIP score (see :func:`eval.clip_score.load_clip`), or ``None`` (``"none"``) to
            skip.
        fid_features: feature extractor for FID/FD (``"toy"``, ``"effnet-lite0"``, ``"inception"``, a module), or
            ``None`` (``"none"``) to skip.
        reference_images (*optional*): real images for FID (tensor, PIL list or folder). Toy world: fresh renders
            of the utility prompts' scenes.
        utility_prompts (*optional*): prompts for CLIP and FID: a list, or a captions CSV (``coco_10k.csv`` works).
            Toy world: the retain prompts; otherwise the bundled captions file.
        utility_limit (`int`, *optional*, defaults to 100): the number of captions taken from a captions file.
        attack_report (*optional*): pre-ASR and ASR from the attack: an ``AttackReport``, a dict, or the path to its
            JSON.
        seeds (`int`, defaults to 2): seeds ``0 .. seeds-1`` per prompt (toy world: 2 seeds give 96 samples of
            the 48-prompt object grid per model).
        num_inference_steps, guidance_scale: sampler settings for both models (pipeline defaults when ``None``).
        kid (`bool`, defaults to `False`): also compute kernel distances with the same features.
        inception_weights: InceptionV3 weights file for ``fid_features="inception"``.
        device: device for models loaded from names and for the metrics.
        output_dir (*optional*): if given, :meth:`Scorecard.save` writes the report there.
        cache_dir (*optional*): an image cache folder for the base model's samples (``pipelines.data``'s cache,
            keyed by the model's weights): scorecards of many erased models against one base (a batch study) sample
            the base once. Cached samples are 8-bit.
    """

    prompts: Sequence[str] | str | os.PathLike | None = field(
        default=None,
        metadata={
            "help": "The concept's prompts (forget rate, UA): a text file, a CSV 'prompt' column or a bundled set "
            "(toy world default: the concept over every colour)."
        },
    )
    paraphrases: Sequence[str] | Mapping[str, Sequence[str]] | str | os.PathLike | None = field(
        default=None,
        metadata={"help": "Prompts that ask for the concept in other words: a text file or a CSV (toy: synonyms)."},
    )
    retain: Mapping[str, Sequence[str]] | str | os.PathLike | None = field(
        default=None,
        metadata={
            "help": "Prompts of concepts that must survive: a CSV with columns 'concept' and 'prompt' (toy: every "
            "other concept of the same kind)."
        },
    )
    clip: Any = field(
        default="toy",
        metadata={"help": "CLIP backbone: toy, a folder, a cached hub id, open_clip:ARCH:WEIGHTS, or none."},
    )
    fid_features: Any = field(
        default="toy",
        metadata={
            "help": "FID features: toy, effnet-lite0 (FD-EffNetLite0), inception (needs local weights), or none."
        },
    )
    reference_images: Any = field(
        default=None,
        metadata={"help": "Folder of real images for FID (toy: fresh renders).", "aliases": ["--reference"]},
    )
    utility_prompts: Sequence[str] | str | os.PathLike | None = field(
        default=None,
        metadata={
            "help": "Utility captions for CLIP/FID on real models: a CSV with 'prompt' (and 'evaluation_seed'), e.g. "
            "coco_10k.csv (default: the bundled captions file).",
            "aliases": ["--captions"],
        },
    )
    utility_limit: int | None = field(
        default=100, metadata={"help": "How many captions to take from --captions.", "aliases": ["--num_captions"]}
    )
    attack_report: Any = field(
        default=None, metadata={"help": "JSON written by the attack (keys pre_asr, asr), or its folder."}
    )
    seeds: int = field(default=DEFAULT_SEEDS, metadata={"help": "Seeds per prompt (0..N-1)."})
    num_inference_steps: int | None = field(
        default=None, metadata={"help": "Sampler steps of every sample (default: the pipeline's)."}
    )
    guidance_scale: float | None = field(
        default=None, metadata={"help": "Guidance scale of every sample (default: the pipeline's)."}
    )
    kid: bool = field(default=False, metadata={"help": "Also compute kernel distances (KID)."})
    inception_weights: str | os.PathLike | None = field(
        default=None, metadata={"help": "InceptionV3 FID weights file (for --fid_features inception)."}
    )
    device: str | None = field(
        default=None, metadata={"help": "Device for models loaded from names and for the metrics."}
    )
    output_dir: str | os.PathLike | None = field(
        default=None, metadata={"help": "Where to write the scorecard (command line default: runs/eval-NAME)."}
    )
    cache_dir: str | os.PathLike | None = field(
        default=None,
        metadata={
            "help": "Cache of the base model's samples (8-bit PNGs keyed by its weights), shared by every scorecard "
            "that names the same folder (batch studies); none samples afresh."
        },
    )

    gan_samples: int = field(
        default=1000,
        metadata={"help": "GANs only: shared latents per generator (the GAN scorecard has no prompts or seeds)."},
    )
    gan_judge: str | None = field(
        default=None,
        metadata={
            "help": "GANs only, in studies: the judge of the GAN scorecard (default: the study's); toy-heldout for "
            "methods that trained against the toy judge."
        },
    )

    def __post_init__(self) -> None:
        # "none" is how the command line and config files say "skip this metric".
        for name in ("clip", "fid_features"):
            value = getattr(self, name)
            if isinstance(value, str) and value.lower() == "none":
                setattr(self, name, None)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {self.seeds}")
        if isinstance(self.gan_samples, bool) or not isinstance(self.gan_samples, int) or self.gan_samples < 2:
            raise ConfigError(f"gan_samples must be at least 2, got {self.gan_samples}")


ScorecardCallback = Callable[[int, int, dict[str, Any]], None]
"""``callback(step, total, logs)``: ``step`` of ``total`` stages are done; ``logs["stage"]`` names the next one."""


class _StageReporter:
    """Calls ``callback(step, total, logs)`` at the start of each stage (``step`` = stages done) and at the end."""

    def __init__(self, callback: ScorecardCallback | None, total: int):
        self.callback = callback
        self.total = total
        self.done = 0

    def __call__(self, name: str, **logs: Any) -> None:
        if self.callback is None:
            logger.info("scorecard: %s %s", name, logs or "")
        else:
            self.callback(min(self.done, self.total), self.total, {"stage": name, **logs})
        self.done += 1

    def finish(self, **logs: Any) -> None:
        if self.callback is not None:
            self.callback(self.total, self.total, {"stage": "done", **logs})


def scorecard(
    model: Any,
    base: Any,
    concept: str,
    judge: Judge | str = "toy",
    *,
    config: ScorecardConfig | None = None,
    callback: ScorecardCallback | None = None,
    **options: Any,
) -> Scorecard:
    """Compare an erased model with its base: forget/retain rates, UA/IRA/CRA, CLIP, FID and attack rates.

    Args:
        model: the erased model: a pipeline, an artifact folder (applied to its base) or a model name/path.
        base: the base model: a pipeline or a model name/path; ``None`` for an artifact folder (its base is used).
        concept (`str`): the erased concept.
        judge: a :class:`~eval.judges.Judge` or a registered judge name.
        config (`ScorecardConfig`, *optional*): the settings (see :class:`ScorecardConfig`); ``**options`` override
            its fields.
        callback (*optional*): ``callback(step, total, logs)`` before each stage (sampling each model, judging,
            CLIP, distances) with ``logs = {"stage": ..., ...}``, and once at the end with ``step == total``.
        **options: fields of :class:`ScorecardConfig` (``prompts``, ``seeds``, ``clip``, ...); an unknown name is a
            ``ConfigError`` naming the closest field.

    Returns:
        :class:`Scorecard`.
    """
    from pipelines.toy.world import canonical, concept_kind, synonyms

    from .accuracy import judge_predictions, toy_labels, ua_ira_cra
    from .rates import toy_prompt_sets

    check_options("the scorecard", options, {f.name for f in fields(ScorecardConfig)})
    cfg = replace(config, **options) if config is not None else ScorecardConfig(**options)
    if _is_gan(model) or _is_gan(base):
        return _gan_scorecard(model, base, concept, judge, cfg, callback)
    seeds, device = cfg.seeds, cfg.device
    start = time.perf_counter()
    judge = load_judge(judge)
    if not judge.knows(concept):
        raise ConfigError(f"the {judge.name} judge does not know the concept {concept!r}; {judge.concept_hint()}")
    # Everything that can fail on bad input is checked before the (slow) sampling starts.
    attack = read_attack_report(cfg.attack_report)
    kind = concept_kind(concept)
    toy = kind in ("object", "colour", "style")
    value = canonical(concept) if toy else concept
    kind = kind if toy else "concept"

    # ---- prompt sets
    prompts, paraphrases, retain = _prompts_option(cfg.prompts), cfg.paraphrases, cfg.retain
    if isinstance(paraphrases, (str, os.PathLike)):
        paraphrases = _prompts_option(paraphrases)
    if isinstance(retain, (str, os.PathLike)):
        retain = _read_retain_file(retain)
    if prompts is None and not toy:
        raise ConfigError(f"give prompts for {concept!r}: the default prompt sets cover only toy-world concepts")
    toy_sets = toy_prompt_sets(value) if toy else {}
    sets: dict[str, list[str]] = {value: list(prompts) if prompts is not None else toy_sets[value]}
    if retain is not None:
        if value in retain:
            raise ConfigError(
                f"retain lists the erased concept {value!r} itself; list only concepts that must survive"
            )
        sets.update({str(k): list(v) for k, v in retain.items()})
    else:
        sets.update({k: v for k, v in toy_sets.items() if k != value})
    if any(not v for v in sets.values()):
        raise ConfigError("every prompt set needs at least one prompt")
    if paraphrases is None:
        words = synonyms(value)[1:] if toy else ()
        paraphrase_sets = {w: toy_prompt_sets(value, word=w)[value] for w in words}
    elif isinstance(paraphrases, Mapping):
        paraphrase_sets = {str(k): list(v) for k, v in paraphrases.items()}
    else:
        paraphrase_sets = {"paraphrased prompts": list(paraphrases)} if paraphrases else {}

    # Utility prompts: the toy world reuses the retain samples; otherwise captions are sampled for CLIP and FID.
    captions = None
    utility_prompts, reference_images = cfg.utility_prompts, cfg.reference_images
    if not (toy and utility_prompts is None) and (cfg.clip is not None or cfg.fid_features is not None):
        if isinstance(utility_prompts, (str, os.PathLike)) or utility_prompts is None:
            captions = load_captions(utility_prompts, limit=cfg.utility_limit)
        else:
            captions = [(str(p), i) for i, p in enumerate(utility_prompts)]
    if isinstance(reference_images, (str, os.PathLike)) and not Path(reference_images).expanduser().is_dir():
        raise ConfigError(f"reference images folder {reference_images} does not exist")
    # Every setting and input is checked; only now do the metric networks load (then the models, then sampling).
    backbone = extractor = None
    if cfg.clip is not None:
        from .clip_score import load_clip

        backbone = load_clip(cfg.clip, device=device or "cpu")
    if cfg.fid_features is not None:
        from .fid import load_feature_extractor

        extractor = load_feature_extractor(cfg.fid_features, inception_weights=cfg.inception_weights, device=device)
    # One progress stage per sampling run and metric, so the total is known before the slow part starts.
    stages = 3 + 2 * (captions is not None) + (backbone is not None) + (extractor is not None)
    stage = _StageReporter(callback, stages)

    erased, base, erased_name, base_name, manifest = _open(model, base, device)
    if manifest and manifest.get("method"):
        erased_name = f"{erased_name} ({manifest['method']})"

    sampler = _sampling_settings(erased, cfg.num_inference_steps, cfg.guidance_scale, seeds)
    samplers = {"base": sampler, "erased": sampler}
    if type(base) is not type(erased):
        # A one-step generator (SFD) against its multistep base: each samples as it is meant to, the base with its own
        # schedule (one step of a multistep pipeline draws noise, which made every retain rate of the base ~0).
        samplers["base"] = _sampling_settings(base, None, None, seeds)
        sampler = {
            **sampler,
            "base": {k: samplers["base"][k] for k in ("num_inference_steps", "guidance_scale", "scheduler")},
        }
    models = {"base": base, "erased": erased}

    # ---- samples, rates and accuracies
    rates: dict[str, dict[str, float]] = {}
    images: dict[str, dict[tuple[str, int], torch.Tensor]] = {"base": {}, "erased": {}}
    keys: list[tuple[str, str, int]] = []
    main_images: dict[str, torch.Tensor] = {}
    paraphrase_rates: dict[str, dict[str, float]] = {"base": {}, "erased": {}}
    n_main = sum(len(v) for v in sets.values()) * seeds
    n_para = sum(len(v) for v in paraphrase_sets.values()) * seeds
    for role, pipe in models.items():
        stage(f"sampling {role}", images=n_main + n_para, seeds=seeds)
        cache = cfg.cache_dir if role == "base" else None  # the erased model is new in every scorecard
        rates[role], keys, main_images[role] = _generate_sets(pipe, sets, judge, seeds, samplers[role], cache)
        for (_, prompt, seed), image in zip(keys, main_images[role]):
            images[role][(prompt, seed)] = image
        for label, group in paraphrase_sets.items():
            group_rates, group_keys, group_images = _generate_sets(
                pipe, {value: group}, judge, seeds, samplers[role], cache
            )
            paraphrase_rates[role][label] = group_rates[value]
            for (_, prompt, seed), image in zip(group_keys, group_images):
                images[role][(prompt, seed)] = image

    stage("judging UA / IRA / CRA")
    labels = []
    for name, prompt, _ in keys:
        lab = toy_labels(prompt) if toy else {}
        lab[kind] = name
        labels.append(lab)
    accuracy = {
        role: ua_ira_cra(judge_predictions(main_images[role], labels, judge), value, kind).to_dict() for role in models
    }

    per_set = len(sets[value]) * seeds
    rate_table: dict[str, Any] = {
        "forget": {
            "concept": value,
            "base": rates["base"][value],
            "erased": rates["erased"][value],
            "samples": per_set,
        },
        "paraphrases": [
            {
                "label": label,
                "base": paraphrase_rates["base"][label],
                "erased": paraphrase_rates["erased"][label],
                "samples": len(group) * seeds,
                "example": group[0],
            }
            for label, group in paraphrase_sets.items()
        ],
        "retain": {
            name: {"base": rates["base"][name], "erased": rates["erased"][name], "samples": len(sets[name]) * seeds}
            for name in sets
            if name != value
        },
    }
    retain_names = [n for n in sets if n != value]
    if retain_names:
        rate_table["retain_mean"] = {
            role: float(np.mean([rates[role][n] for n in retain_names])) for role in ("base", "erased")
        }
        rate_table["max_retain_shift"] = max(abs(rates["erased"][n] - rates["base"][n]) for n in retain_names)

    # ---- utility samples for CLIP and FID
    util_prompts, util_labels, util = _utility_samples(models, keys, main_images, value, captions, samplers, stage)
    utility_source = (
        "the retain prompts" if toy and utility_prompts is None else _describe_utility(utility_prompts, util_prompts)
    )

    clip_section = None
    if backbone is not None and util_prompts:
        from .clip_score import backbone_note, clip_scores

        stage("CLIP score", images=len(util_prompts))
        clip_section = {
            role: {k: r.to_dict() for k, r in clip_scores(util[role], util_prompts, backbone=backbone).items()}
            for role in models
        }
        clip_section.update(
            {
                "prompts": utility_source,
                "num_prompts": len(util_prompts),
                "backbone_note": backbone_note(backbone.name),
            }
        )

    distance_section = None
    if extractor is not None and util_prompts:
        from .fid import frechet_distance, kernel_distance

        stage("distances", metric=extractor.frechet_metric)
        reference, reference_note = None, "none"
        if reference_images is not None:
            size = util["base"].shape[-1]
            reference = load_reference_images(reference_images, size)
            reference_note = f"{len(reference)} given images"
        elif toy and utility_prompts is None:
            reference = toy_reference_renders(util_labels)
            reference_note = (
                f"{len(reference)} fresh toy-world renders of the utility prompts' scenes (seed {REFERENCE_SEED})"
            )
        pairs = {"erased_vs_base": (util["base"], util["erased"])}
        if reference is not None:
            pairs["base_vs_reference"] = (reference, util["base"])
            pairs["erased_vs_reference"] = (reference, util["erased"])
        distance_section = {"reference": reference_note}
        for key, (real, fake) in pairs.items():
            distance_section[key] = frechet_distance(real, fake, features=extractor).to_dict()
            if cfg.kid:
                distance_section["kid_" + key] = kernel_distance(real, fake, features=extractor).to_dict()

    card = Scorecard(
        concept=value,
        kind=kind,
        models={"base": base_name, "erased": erased_name},
        judge=judge.describe(),
        sampling=sampler,
        rates=rate_table,
        accuracy=accuracy,
        clip=clip_section,
        distances=distance_section,
        attack=attack,
        seconds=round(time.perf_counter() - start, 2),
        samples=_grid_samples(images, sets, paraphrase_sets, value, seeds),
    )
    if cfg.output_dir is not None:
        card.save(cfg.output_dir)
    stage.finish(seconds=card.seconds)
    return card


def _utility_samples(models, keys, main_images, value, captions, samplers, stage):
    """Prompts, toy labels and per-model images for CLIP and FID: the retain samples, or fresh caption samples."""
    from pipelines.sd import generate

    from .accuracy import toy_labels

    if captions is None:
        index = [i for i, (name, _, _) in enumerate(keys) if name != value] or list(range(len(keys)))
        prompts = [keys[i][1] for i in index]
        util = {role: main_images[role][index] for role in models}
        return prompts, [toy_labels(p) for p in prompts], util
    prompts = [c for c, _ in captions]
    seeds = [s for _, s in captions]
    util = {}
    for role, pipe in models.items():
        stage(f"sampling {role} on utility prompts", images=len(prompts))
        util[role] = generate(
            pipe,
            prompts,
            seeds=seeds,
            num_inference_steps=samplers[role]["num_inference_steps"],
            guidance_scale=samplers[role]["guidance_scale"],
        )
    return prompts, [toy_labels(p) for p in prompts], util


def _describe_utility(source: Any, prompts: Sequence[str]) -> str:
    if source is None or isinstance(source, (str, os.PathLike)):
        name = Path(os.fspath(source)).name if source is not None else UTILITY_CAPTIONS
        return f"{name}, first {len(prompts)} captions"
    return f"{len(prompts)} given prompts"


def _grid_samples(images, sets, paraphrase_sets, value, seeds) -> dict[str, Any]:
    """Up to 6 prompts (2 forget, 1 paraphrase, 3 retain) x up to 3 seeds for the before/after grid."""
    chosen = list(sets[value][:2])
    for group in list(paraphrase_sets.values())[:1]:
        chosen.append(group[0])
    chosen += [prompts[0] for name, prompts in sets.items() if name != value][:3]
    chosen = list(dict.fromkeys(chosen))
    grid_seeds = list(range(min(seeds, 3)))
    before = torch.stack([images["base"][(p, s)] for p in chosen for s in grid_seeds])
    after = torch.stack([images["erased"][(p, s)] for p in chosen for s in grid_seeds])
    return {"prompts": chosen, "seeds": grid_seeds, "before": before, "after": after}
