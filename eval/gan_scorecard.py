"""The scorecard of an erased GAN against its base: the concept's share, PUL, what happened to everything else, FD, γ.

A GAN has no prompts, so its scorecard compares the two generators on **shared latents** (``bundle.sample(n, seed)``
draws identical z and noise for any two generators of one architecture):

- **forget rate**: the share of samples in which the judge finds the concept, base and erased;
- **PUL** (Adapt-then-Unlearn's percentage of unlearning): ``(N_base − N_erased) / N_base`` on those latents;
- **shares**: with a judge that has heads (the toy judges: object, colour, style, background), how often each value
  is the judge's top class, base and erased, and the **largest shift** of any value other than the concept (the
  survivors check of issues 9, 19 and 22);
- **kept**: the paired view of the same samples. Of the base samples without the concept, the share whose top class
  on each head is the same after erasure, per value of the concept's head, and the commonest changes. Shares can
  stay level while samples trade places (stars turn into hearts as hearts turn into stars), which only the paired
  count sees; shared latents make it free;
- **FD**: Fréchet distance between erased and base samples on a named feature network (``FD-toy`` in the toy world);
- **γ** (Text-to-Unlearn's degree of unlearning), when a CLIP backbone is given: the Wasserstein-1 distance between
  the CLIP alignment scores of base and erased samples, for the concept's prompts (in-domain) and its paraphrases
  (out-of-domain), with the backbone named.

:func:`eval.scorecard.scorecard` hands a GAN (a ``GANBundle`` or a GAN artifact folder) to :func:`gan_scorecard`, so
the CLI's ``eval``, the studio's Score button and batch studies reach it through the one entry point.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.errors import ConfigError
from pipelines.gan import GANBundle

from .judges import load_judge
from .scorecard import _num, _pct

GAN_LEADERBOARD_COLUMNS = ("forget", "PUL", "worst other shift", "kept", "FD", "γ in-domain", "γ out-of-domain")


@dataclass
class GANScorecard:
    """The comparison of an erased GAN with its base. Build it with :func:`gan_scorecard`.

    Args:
        concept (`str`): the erased concept; ``kind`` its head (``object``, ``colour``, ...) or ``concept``.
        models (`dict`): ``{"base": name, "erased": name}``.
        judge (`dict`): the judge's description.
        sampling (`dict`): ``num_samples`` and ``seed`` of the shared latents.
        rates (`dict`): ``forget`` (base / erased rates), ``pul``, and with a headed judge ``shares`` (head to
            ``{"base": {value: share}, "erased": {...}}``) and ``worst_other`` (``{"name", "base", "erased",
            "shift"}``), and ``kept`` (:func:`kept_on_shared_latents`).
        distances (`dict`, *optional*): ``erased_vs_base``, a Fréchet distance with its feature network named.
        gamma (`dict`, *optional*): ``in_domain`` and ``out_of_domain`` results of
            :func:`gan.metrics.degree_of_unlearning`.
        seconds (`float`): wall time of the evaluation.
        samples (`dict`, *optional*): images for the before/after grid (in memory only).
    """

    concept: str
    kind: str
    models: dict[str, str]
    judge: dict[str, Any]
    sampling: dict[str, Any]
    rates: dict[str, Any]
    distances: dict[str, Any] | None = None
    gamma: dict[str, Any] | None = None
    seconds: float = 0.0
    samples: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def forget_rate(self) -> dict[str, float]:
        return {"base": self.rates["forget"]["base"], "erased": self.rates["forget"]["erased"]}

    def leaderboard(self) -> list[dict[str, Any]]:
        """One row per model (rates as fractions, ``None`` where not measured or not applicable)."""
        worst = self.rates.get("worst_other")
        fd = (self.distances or {}).get("erased_vs_base")
        gamma = self.gamma or {}
        rows = [{"model": "base", "forget": self.rates["forget"]["base"]}]
        rows.append(
            {
                "model": "erased",
                "forget": self.rates["forget"]["erased"],
                "PUL": self.rates.get("pul"),
                "worst other shift": worst["shift"] if worst else None,
                "kept": (self.rates.get("kept") or {}).get("share"),
                "FD": fd["value"] if fd else None,
                "γ in-domain": gamma["in_domain"]["gamma"] if gamma.get("in_domain") else None,
                "γ out-of-domain": gamma["out_of_domain"]["gamma"] if gamma.get("out_of_domain") else None,
            }
        )
        return [{c: row.get(c) for c in ("model", *GAN_LEADERBOARD_COLUMNS)} for row in rows]

    def definitions(self) -> dict[str, str]:
        fd = (self.distances or {}).get("erased_vs_base")
        backbone = ((self.gamma or {}).get("in_domain") or {}).get("backbone")
        return {
            "forget": f"share of samples in which the {self.judge.get('name')} judge finds '{self.concept}'",
            "PUL": "percentage of unlearning, (N_base − N_erased) / N_base on the same latents (Adapt-then-Unlearn)",
            "worst other shift": "the largest change, in points, of any other value's share of the judge's top class",
            "kept": f"of the samples without '{self.concept}' before erasure, the share whose top {self.kind} is the "
            "same after (same latents)",
            "FD": f"{fd['metric']} between erased and base samples" if fd else "Fréchet distance (not measured)",
            "γ": "Wasserstein-1 distance between the CLIP alignment scores of base and erased samples "
            f"(Text-to-Unlearn){f'; backbone {backbone}' if backbone else ' (not measured)'}",
        }

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "samples"}
        data = json.loads(json.dumps(data))  # a deep, JSON-safe copy
        data["model_type"] = "stylegan2"
        data["leaderboard"] = self.leaderboard()
        data["definitions"] = self.definitions()
        return data

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        s = self.sampling
        lines = [
            f"# Scorecard: '{self.concept}' erased from a GAN",
            "",
            f"Base `{self.models['base']}`, erased `{self.models['erased']}`; judge `{self.judge.get('name')}`. "
            f"{s['num_samples']} shared latents (seed {s['seed']}) for both generators. {self.seconds:.0f} s.",
            "",
            "| model | " + " | ".join(GAN_LEADERBOARD_COLUMNS) + " |",
            "|---|" + "---|" * len(GAN_LEADERBOARD_COLUMNS),
        ]
        for row in self.leaderboard():
            worst = row["worst other shift"]
            cells = [
                _pct(row["forget"]),
                _pct(row["PUL"]),
                "–" if worst is None else f"{100 * worst:+.1f} pts ({self.rates['worst_other']['name']})",
                _pct(row["kept"]),
                _num(row["FD"], 4),
                _num(row["γ in-domain"], 4),
                _num(row["γ out-of-domain"], 4),
            ]
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
        lines += ["", "### Definitions", ""]
        lines += [f"- **{name}**: {text}." for name, text in self.definitions().items()]
        lines += ["- '–' means not measured or not applicable.", ""]
        for head, table in (self.rates.get("shares") or {}).items():
            lines += [f"## Shares by {head}", "", "| value | base | erased | change |", "|---|---|---|---|"]
            for value, before in table["base"].items():
                after = table["erased"][value]
                lines.append(f"| {value} | {_pct(before)} | {_pct(after)} | {100 * (after - before):+.1f} pts |")
            lines.append("")
        kept = self.rates.get("kept") or {}
        if kept.get("by_value"):
            lines += [f"## Kept, by {self.kind}", "", f"{kept['num_samples']} base samples without the concept.", ""]
            lines += ["| value | kept |", "|---|---|"]
            lines += [f"| {value} | {_pct(share)} |" for value, share in kept["by_value"].items()]
            changes = ", ".join(f"{c['from']} -> {c['to']}: {c['count']}" for c in kept["changes"]) or "none"
            lines += ["", f"Commonest changes: {changes}.", ""]
        for domain, result in (self.gamma or {}).items():
            if result:
                lines += [f"## γ, {domain.replace('_', '-')} ({result['backbone']})", ""]
                lines += ["| prompt | γ | alignment base | alignment erased |", "|---|---|---|---|"]
                for prompt, value in result["per_prompt"].items():
                    base, erased = result["alignment_base"][prompt], result["alignment_erased"][prompt]
                    lines.append(f"| {prompt} | {value:.4f} | {base:.4f} | {erased:.4f} |")
                lines.append("")
        lines += ["![before and after](samples.png)", "", "![shares](rates.png)", ""]
        return "\n".join(lines)

    def save(self, output_dir: str | os.PathLike) -> Path:
        """Write ``scorecard.json``, ``scorecard.md``, ``samples.png`` and ``rates.png`` (each written atomically)."""
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_text(out / "scorecard.json", self.to_json())
        _write_text(out / "scorecard.md", self.to_markdown())
        if self.samples:
            from pipelines.images import image_grid, to_pil

            n = len(self.samples["before"])
            grid = image_grid(
                [to_pil(self.samples["before"]), to_pil(self.samples["after"])],
                row_labels=["base", "erased"],
                col_labels=[f"z{i}" for i in range(n)],
                title=f"'{self.concept}': base (top) vs erased (bottom), same latents",
            )
            tmp = out / "samples.tmp.png"
            grid.save(tmp)
            tmp.replace(out / "samples.png")
        self.plot_rates(out / "rates.png")
        return out

    def plot_rates(self, path: str | os.PathLike) -> Path:
        """Bar chart of the shares of the concept's head (or the forget rate alone), base vs erased."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        table = (self.rates.get("shares") or {}).get(self.kind)
        if table:
            labels = list(table["base"])
            base, erased = [table["base"][v] for v in labels], [table["erased"][v] for v in labels]
        else:
            labels, base, erased = [self.concept], [self.forget_rate["base"]], [self.forget_rate["erased"]]
        x = np.arange(len(labels))
        fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(labels) + 1.5), 3.6), dpi=100)
        ax.bar(x - 0.2, base, 0.4, label="base", color="#9e9e9e")
        ax.bar(x + 0.2, erased, 0.4, label="erased", color="#d9534f")
        ax.set_xticks(x, [f"{v}\n(erased)" if v == self.concept else v for v in labels], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("share of samples")
        ax.set_title(f"'{self.concept}' erased from a GAN ({self.judge.get('name')} judge)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
        return path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def worst_other_share(
    shares: Mapping[str, Mapping[str, Mapping[str, float]]], head: str | None, concept: str
) -> tuple[str, str]:
    """``(head, value)`` of the share that moved most, the concept's own excepted; ``shares[head]`` holds the
    ``"base"`` and ``"erased"`` share of every value (the scorecard's ``rates["shares"]``)."""
    others = [(h, v) for h in shares for v in shares[h]["base"] if not (h == head and v == concept)]
    return max(others, key=lambda hv: abs(shares[hv[0]]["erased"][hv[1]] - shares[hv[0]]["base"][hv[1]]))


def kept_on_shared_latents(
    p_before: Mapping[str, Any],
    p_after: Mapping[str, Any],
    heads: Mapping[str, Sequence[str]],
    without_concept: Sequence[bool],
    head: str | None,
    concept: str,
    *,
    num_changes: int = 5,
) -> dict[str, Any] | None:
    """Paired retention: of the samples that do not show the concept before erasure, how many keep their top class.

    Args:
        p_before, p_after: the judge's probabilities per head (``(N, classes)``) on the same latents, base and erased.
        heads: each head's class names.
        without_concept: per sample, whether the base sample lacks the concept (the judge's verdict).
        head: the concept's head (``"object"`` for "circle"); ``None`` for a concept that is no head's value.
        concept: the erased value, left out of ``by_value``.
        num_changes: how many of the commonest changes (``from -> to`` on the concept's head) to list.

    Returns:
        ``{"num_samples", "by_head": {head: share}, "share"}`` (``share``: the concept's head, else ``None``), with
        ``by_value`` (each other value's share kept), ``worst`` and ``changes`` when the concept is a head's value;
        ``None`` when every base sample shows the concept.
    """
    mask = np.asarray(without_concept, dtype=bool)
    if not mask.any():
        return None
    tops = {h: (np.asarray(p_before[h].argmax(1)), np.asarray(p_after[h].argmax(1))) for h in heads}
    by_head = {h: float((before[mask] == after[mask]).mean()) for h, (before, after) in tops.items()}
    result: dict[str, Any] = {"num_samples": int(mask.sum()), "by_head": by_head, "share": by_head.get(head)}
    if head not in tops:
        return result
    before, after = tops[head]
    names = list(heads[head])
    by_value = {
        name: float((after[mask & (before == i)] == i).mean())
        for i, name in enumerate(names)
        if name != concept and (mask & (before == i)).any()
    }
    moved = mask & (before != after)
    pairs, counts = np.unique(np.stack([before[moved], after[moved]], 1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:num_changes]
    result["by_value"] = by_value
    if by_value:
        worst = min(by_value, key=by_value.__getitem__)
        result["worst"] = {"name": f"{head}: {worst}", "kept": by_value[worst]}
    result["changes"] = [
        {"from": names[pairs[k][0]], "to": names[pairs[k][1]], "count": int(counts[k])} for k in order
    ]
    return result


def gan_scorecard(
    model: GANBundle,
    base: GANBundle,
    concept: str,
    judge: Any = "toy",
    *,
    num_samples: int = 1000,
    seed: int = 0,
    fid_features: Any = "toy",
    clip: Any = None,
    prompts: Sequence[str] | None = None,
    paraphrases: Sequence[str] | None = None,
    names: tuple[str, str] | None = None,
    callback: Callable[[int, int, dict[str, Any]], None] | None = None,
    output_dir: str | os.PathLike | None = None,
) -> GANScorecard:
    """Compare an erased GAN with its base on shared latents.

    Args:
        model (`GANBundle`), base (`GANBundle`): the erased generator and the one it came from (same architecture).
        concept (`str`): the erased concept.
        judge: a judge or a registered judge name (``toy-heldout`` for a method that trained against ``toy``).
        num_samples (`int`, defaults to 1000), seed (`int`, defaults to 0): the shared latents.
        fid_features: feature network of the FD (``"toy"``, ``"inception"``, ...), or ``None`` to skip.
        clip: a CLIP backbone (``pipelines.clip.load_clip`` names) for γ, or ``None`` to skip.
        prompts, paraphrases: the concept's prompts for γ in- and out-of-domain. Defaults: the concept, and in the
            toy world its synonyms ("a pentagram").
        names: display names of (erased, base).
        callback: ``callback(step, total, logs)`` before each stage.
        output_dir: if given, :meth:`GANScorecard.save` writes the report there.
    """
    from pipelines.toy.world import canonical, concept_kind, prompt_for, synonyms

    from .gan_metrics import generator_fd

    if not isinstance(model, GANBundle) or not isinstance(base, GANBundle):
        raise ConfigError("a GAN scorecard compares two GANBundles (the erased generator and its base)")
    if num_samples < 2:
        raise ConfigError(f"num_samples must be at least 2, got {num_samples}")
    start = time.perf_counter()
    judge = load_judge(judge)
    if not judge.knows(concept):
        raise ConfigError(f"the {judge.name} judge does not know the concept {concept!r}; {judge.concept_hint()}")
    kind = concept_kind(concept)
    value = canonical(concept) if kind else concept
    stages = ["sample", "judge", *(["distances"] if fid_features is not None else []), *(["clip"] if clip else [])]
    total = len(stages) + 1

    def stage(name: str) -> None:
        if callback is not None:
            callback(stages.index(name) + 1, total, {"stage": name})

    stage("sample")
    before = base.sample(num_samples, seed=seed)
    after = model.sample(num_samples, seed=seed)
    stage("judge")
    verdicts_before = judge(before, concept)
    hits_before = sum(v.success for v in verdicts_before)
    hits_after = sum(v.success for v in judge(after, concept))
    rates: dict[str, Any] = {
        "forget": {"concept": value, "base": hits_before / num_samples, "erased": hits_after / num_samples},
        "pul": (hits_before - hits_after) / hits_before if hits_before else None,
    }
    heads = getattr(judge, "heads", None)
    if heads and hasattr(judge, "probabilities"):
        from pipelines.toy.quality import top_class_frequency

        p_before, p_after = judge.probabilities(before), judge.probabilities(after)
        shares = {
            head: {
                "base": top_class_frequency(p_before[head], heads[head]),
                "erased": top_class_frequency(p_after[head], heads[head]),
            }
            for head in heads
        }
        h, v = worst_other_share(shares, kind, value)
        rates["shares"] = shares
        rates["worst_other"] = {
            "name": f"{h}: {v}",
            "base": shares[h]["base"][v],
            "erased": shares[h]["erased"][v],
            "shift": shares[h]["erased"][v] - shares[h]["base"][v],
        }
        without_concept = [not v.success for v in verdicts_before]
        rates["kept"] = kept_on_shared_latents(p_before, p_after, heads, without_concept, kind, value)

    distances = None
    if fid_features is not None:
        stage("distances")
        fd = generator_fd(model, base, features=fid_features, num_samples=num_samples, seed=seed)
        distances = {"erased_vs_base": fd.to_dict()}

    gamma = None
    if clip:
        from gan.metrics import degree_of_unlearning
        from pipelines.clip import load_clip

        stage("clip")
        backbone = load_clip(clip, device=base.device)
        toy_object = kind == "object"
        in_domain = list(prompts) if prompts else [prompt_for(value) if toy_object else value]
        if paraphrases is None and toy_object:
            paraphrases = [prompt_for(value, word=w) for w in synonyms(value)[1:]]
        gamma = {
            "in_domain": degree_of_unlearning(base, model, backbone, in_domain, num_samples=num_samples, seed=seed),
            "out_of_domain": degree_of_unlearning(
                base, model, backbone, list(paraphrases), num_samples=num_samples, seed=seed
            )
            if paraphrases
            else None,
        }

    if names is None:
        names = (
            str(model.metadata.get("name_or_path") or "erased GAN"),
            str(base.metadata.get("name_or_path") or "base GAN"),
        )
    erased_name, base_name = names
    card = GANScorecard(
        concept=value,
        kind=kind or "concept",
        models={"base": base_name, "erased": erased_name},
        judge=judge.describe(),
        sampling={"num_samples": num_samples, "seed": seed, "latents": "shared (bundle.sample)"},
        rates=rates,
        distances=distances,
        gamma=gamma,
        seconds=round(time.perf_counter() - start, 2),
        samples={"before": before[:8], "after": after[:8]},
    )
    if callback is not None:
        callback(total, total, {"stage": "done"})
    if output_dir is not None:
        card.save(output_dir)
    return card
