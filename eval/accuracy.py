"""UA, IRA and CRA: UnlearnCanvas' forget and retain accuracies, from per-image judge predictions.

UnlearnCanvas generates images for prompts with known labels in two domains (style and object), classifies each
image in each domain, and reports, when a concept of one domain is unlearned:

- **UA** (unlearning accuracy): the fraction of images generated for the unlearned concept that the classifier does
  *not* assign to it (higher is better erasure).
- **IRA** (in-domain retain accuracy): classification accuracy on the other concepts of the same domain (other
  styles when a style is unlearned).
- **CRA** (cross-domain retain accuracy): classification accuracy in the other domains (objects when a style is
  unlearned), over every generated image, including those of the unlearned concept's prompts.

Accuracies are averaged per concept first and then over concepts (UnlearnCanvas accumulates a per-class accuracy and
averages the classes), which equals the per-image mean when every concept has the same number of images.

In the toy world the domains are the scene attributes: ``object``, ``colour`` and ``style``. A prompt such as
"a striped red star" carries one label per attribute it names, and the toy judge classifies every attribute.

:func:`ua_ira_cra` is a pure function of :class:`Prediction` records; :func:`judge_predictions` turns images and
their labels into records with any judge; :func:`accuracy_from_pipeline` generates the images too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from pipelines.errors import ConfigError

from .judges import Judge, load_judge

DEFINITIONS: dict[str, str] = {
    "UA": "unlearning accuracy: share of images generated for the erased concept that the judge does NOT classify "
    "as that concept (higher = better erasure)",
    "IRA": "in-domain retain accuracy: judge accuracy on the other concepts of the erased concept's kind "
    "(e.g. other objects), averaged per concept",
    "CRA": "cross-domain retain accuracy: judge accuracy on the concepts of the other kinds (e.g. colours and "
    "styles when an object is erased), over all images, averaged per concept",
}


@dataclass(frozen=True)
class Prediction:
    """The judge's reading of one image in one domain.

    Args:
        kind (`str`): the domain (attribute) of the label: ``"object"``, ``"style"``, ``"colour"``, ...
        target (`str`): the concept the prompt asked for in that domain.
        predicted (`str`): the concept the judge saw in that domain.
    """

    kind: str
    target: str
    predicted: str

    @property
    def correct(self) -> bool:
        return self.predicted == self.target


@dataclass
class AccuracyResult:
    """UA / IRA / CRA for one erased concept, with per-concept accuracies and the counts behind them.

    Args:
        concept (`str`): the erased concept.
        kind (`str`): its domain.
        ua (`float`, *optional*): unlearning accuracy; ``None`` if no image targeted the concept.
        ira (`float`, *optional*): in-domain retain accuracy; ``None`` without other concepts of that kind.
        cra (`float`, *optional*): cross-domain retain accuracy; ``None`` without labels of other kinds.
        per_concept (`dict`): ``{kind: {concept: accuracy}}``, the judge's accuracy per labelled concept.
        counts (`dict`): images behind UA, IRA and CRA.
    """

    concept: str
    kind: str
    ua: float | None
    ira: float | None
    cra: float | None
    per_concept: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ua_ira_cra(predictions: Iterable[Prediction], concept: str, kind: str) -> AccuracyResult:
    """UA, IRA and CRA from per-image predictions (a pure function).

    Args:
        predictions (`Iterable[Prediction]`): one record per image and labelled domain.
        concept (`str`): the erased concept, spelled as in ``Prediction.target``.
        kind (`str`): the erased concept's domain.

    Returns:
        :class:`AccuracyResult`; a metric without images is ``None``.

    Example:

    ```python
    >>> records = [Prediction("object", "star", "circle"), Prediction("object", "circle", "circle")]
    >>> ua_ira_cra(records, "star", "object").ua
    1.0
    ```
    """
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for p in predictions:
        hits[(p.kind, p.target)].append(p.correct)
    if not hits:
        raise ConfigError("no predictions to compute UA / IRA / CRA from")
    accuracy = {key: float(np.mean(values)) for key, values in hits.items()}
    per_concept: dict[str, dict[str, float]] = defaultdict(dict)
    for (k, target), value in sorted(accuracy.items()):
        per_concept[k][target] = value

    erased = (kind, concept)
    in_domain = [key for key in accuracy if key[0] == kind and key != erased]
    cross_domain = [key for key in accuracy if key[0] != kind]
    return AccuracyResult(
        concept=concept,
        kind=kind,
        ua=1.0 - accuracy[erased] if erased in accuracy else None,
        ira=float(np.mean([accuracy[key] for key in in_domain])) if in_domain else None,
        cra=float(np.mean([accuracy[key] for key in cross_domain])) if cross_domain else None,
        per_concept=dict(per_concept),
        counts={
            "UA": len(hits.get(erased, [])),
            "IRA": sum(len(hits[key]) for key in in_domain),
            "CRA": sum(len(hits[key]) for key in cross_domain),
        },
    )


# ---------------------------------------------------------------- from images


def judge_predictions(
    images: torch.Tensor, labels: Sequence[Mapping[str, str]], judge: Judge | str = "toy"
) -> list[Prediction]:
    """Ask the judge about every labelled domain of every image and return one :class:`Prediction` per pair.

    Images sharing a label are judged in one batch. With a judge that only says yes or no (``Verdict.success``),
    the prediction is the target when it says yes and the judge's own label otherwise.

    Args:
        images (`torch.Tensor`): floats in [0, 1] ``(N, 3, H, W)``.
        labels (`Sequence[Mapping[str, str]]`): per image, ``{kind: concept}`` for every domain its prompt names.
        judge: a :class:`Judge` or a registered judge name.
    """
    if len(images) != len(labels):
        raise ConfigError(f"give labels for every image: {len(images)} images but {len(labels)} label sets")
    judge = load_judge(judge)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, image_labels in enumerate(labels):
        for kind, target in image_labels.items():
            groups[(kind, target)].append(index)
    predictions: list[Prediction] = []
    for (kind, target), indices in groups.items():
        for verdict in judge(images[indices], target):
            if verdict.success:
                seen = target
            else:
                seen = verdict.label if verdict.label != target else f"not {target}"
            predictions.append(Prediction(kind, target, seen))
    return predictions


def toy_labels(prompt: str) -> dict[str, str]:
    """The toy-world attributes a prompt names, synonyms included: "a hollow red moon" -> object, colour, style.

    Backgrounds are left out: they are not concepts the toy world erases.
    """
    from pipelines.toy.world import WORDS, canonical, concept_kind

    text = f" {prompt.lower().strip()} "
    for ch in ",.;:!?":
        text = text.replace(ch, " ")
    labels: dict[str, str] = {}
    # Longest phrases first, so "plus sign" wins over a one-word reading.
    phrases = sorted({w for words in WORDS.values() for w in words} | {"outline"}, key=len, reverse=True)
    for phrase in phrases:
        for form in (phrase, phrase + "s"):
            if f" {form} " in text:
                value = canonical(phrase)
                kind = concept_kind(phrase)
                if value and kind in ("object", "colour", "style") and kind not in labels:
                    labels[kind] = value
                text = text.replace(f" {form} ", " | ")
    return labels


def toy_labelled_prompts(concept: str) -> list[tuple[str, dict[str, str]]]:
    """The toy world's UA/IRA/CRA prompt grid for ``concept``: ``eval.rates.toy_prompt_sets`` with labels."""
    from pipelines.toy.world import canonical, concept_kind

    from .rates import toy_prompt_sets

    kind = concept_kind(concept)
    if kind not in ("object", "colour", "style"):
        raise ConfigError(f"{concept!r} is not a toy-world object, colour or style")
    labelled = []
    for value, prompts in toy_prompt_sets(canonical(concept)).items():
        for prompt in prompts:
            labels = toy_labels(prompt)
            labels[kind] = value  # the set's own label is authoritative
            labelled.append((prompt, labels))
    return labelled


def accuracy_from_pipeline(
    pipe,
    concept: str,
    judge: Judge | str = "toy",
    *,
    labelled_prompts: Sequence[tuple[str, Mapping[str, str]]] | None = None,
    kind: str | None = None,
    seeds: int = 1,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
) -> AccuracyResult:
    """Generate from ``pipe`` for labelled prompts, judge every image, and compute UA / IRA / CRA.

    Args:
        pipe: a diffusers text-to-image pipeline (the erased model, or the base for reference values).
        concept (`str`): the erased concept.
        judge: a :class:`Judge` or a registered judge name.
        labelled_prompts: ``[(prompt, {kind: concept, ...}), ...]``; defaults to :func:`toy_labelled_prompts`.
        kind (`str`, *optional*): the erased concept's domain; inferred for toy-world concepts.
        seeds (`int`, defaults to 1): seeds ``0 .. seeds-1`` per prompt.
        num_inference_steps, guidance_scale: sampler settings (the pipeline's defaults when ``None``).
    """
    from pipelines.sd import generate
    from pipelines.toy.world import canonical, concept_kind

    if labelled_prompts is None:
        labelled_prompts = toy_labelled_prompts(concept)
        concept, kind = canonical(concept), concept_kind(concept)
    if kind is None:
        kind = concept_kind(concept)
        if kind is None:
            raise ConfigError(f"give the domain (kind) of {concept!r}, e.g. kind='style'")
        concept = canonical(concept)
    prompts = [p for p, _ in labelled_prompts for _ in range(seeds)]
    labels = [dict(lab) for _, lab in labelled_prompts for _ in range(seeds)]
    seed_list = [s for _ in labelled_prompts for s in range(seeds)]
    images = generate(
        pipe, prompts, seeds=seed_list, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale
    )
    return ua_ira_cra(judge_predictions(images, labels, judge), concept, kind)
