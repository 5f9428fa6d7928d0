"""How often a model draws a concept: the judge's success rate over prompt sets, before and after erasure."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .judges import Judge, load_judge


def toy_prompt_sets(concept: str, *, word: str | None = None) -> dict[str, list[str]]:
    """Prompt sets for the toy world: one set per value of the concept's attribute ("a {colour} {object}" grid).

    For an object concept every object gets its prompts over every colour; for a colour, every colour over every
    object; for a style, "a {style} {colour} {object}" over objects. ``word`` replaces the concept's own word (a
    synonym, for paraphrase rates).
    """
    from pipelines.toy.world import COLOURS, OBJECTS, STYLES, WORDS, canonical, concept_kind, prompt_for

    kind, value = concept_kind(concept), canonical(concept)
    if kind == "object":
        return {o: [prompt_for(o, c, word=word if o == value else None) for c in COLOURS] for o in OBJECTS}
    if kind == "colour":
        return {c: [prompt_for(o, c) for o in OBJECTS] for c in COLOURS}
    if kind == "style":
        sets = {}
        for s in STYLES:
            adj = word if s == value and word else WORDS[s][0]
            sets[s] = [f"a {adj} {c} {o}" for o, c in zip(OBJECTS, COLOURS * 2)]
        return sets
    raise ValueError(f"{concept!r} is not a toy-world concept")


def concept_rates(
    pipe,
    prompt_sets: dict[str, list[str]],
    judge: Judge | str = "toy",
    *,
    seeds: int = 2,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    return_images: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """For each ``concept -> prompts`` entry, the fraction of samples in which the judge finds that concept.

    Every prompt is sampled with seeds ``0 .. seeds-1`` (the same seeds for every model, so before/after compare
    like with like). With ``cache_dir`` the samples are read from (and written to) the on-disk image cache keyed by
    the model's weights (``pipelines.data.generate_images_cached``), so a base model shared by many runs of a study
    is sampled once; cached samples are 8-bit, as a saved PNG stores them.
    """
    from pipelines.sd import generate

    judge = load_judge(judge)
    names = list(prompt_sets)
    prompts = [p for n in names for p in prompt_sets[n] for _ in range(seeds)]
    seed_list = [s for n in names for _ in prompt_sets[n] for s in range(seeds)]
    if cache_dir is not None:
        from pipelines.data import generate_images_cached

        steps, guidance = _call_defaults(pipe, num_inference_steps, guidance_scale)
        cached = generate_images_cached(
            pipe, prompts, seed_list, cache_dir, num_inference_steps=steps, guidance_scale=guidance
        )
        images = cached.images.float() / 255
    else:
        images = generate(
            pipe, prompts, seeds=seed_list, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale
        )
    rates, start = {}, 0
    for n in names:
        count = len(prompt_sets[n]) * seeds
        verdicts = judge(images[start : start + count], n)
        rates[n] = float(np.mean([v.success for v in verdicts]))
        start += count
    out: dict[str, Any] = {"rates": rates, "samples_per_concept": {n: len(prompt_sets[n]) * seeds for n in names}}
    if return_images:
        out["images"] = images
    return out


def _call_defaults(pipe, num_inference_steps: int | None, guidance_scale: float | None) -> tuple[int, float]:
    """The sampler settings a pipeline call would use: the given ones, else the pipeline's ``__call__`` defaults."""
    import inspect

    parameters = inspect.signature(type(pipe).__call__).parameters
    if num_inference_steps is None:
        num_inference_steps = parameters["num_inference_steps"].default
    if guidance_scale is None:
        guidance_scale = parameters["guidance_scale"].default
    return int(num_inference_steps), float(guidance_scale)


def erasure_rates(
    base,
    erased,
    concept: str,
    judge: Judge | str = "toy",
    *,
    seeds: int = 2,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    before: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Judge rates of the base and the erased model on the toy world's prompt sets for ``concept``'s attribute.

    ``before`` takes the base model's rates from an earlier call with the same concept, seeds and sampler
    (``result["before"]``); the base is then not sampled again, which halves the cost of comparing several erasures
    of one base.

    Returns ``{"concept", "before": {c: rate}, "after": {c: rate}, "forget_drop": relative drop on the concept,
    "max_other_shift": largest absolute change on any other value, "mean_other_shift": their mean absolute change}``.
    """
    from pipelines.toy.world import canonical

    sets = toy_prompt_sets(concept)
    kw = dict(seeds=seeds, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
    if before is None:
        before = concept_rates(base, sets, judge, **kw)["rates"]
    elif set(before) != set(sets):
        raise ValueError(
            f"`before` must rate {sorted(sets)}, the prompt sets of {concept!r}; it rates {sorted(before)}"
        )
    after = concept_rates(erased, sets, judge, **kw)["rates"]
    value = canonical(concept)
    shifts = [abs(after[c] - before[c]) for c in sets if c != value]
    return {
        "concept": value,
        "judge": load_judge(judge).describe(),
        "samples_per_concept": len(sets[value]) * seeds,
        "before": before,
        "after": after,
        "forget_drop": (before[value] - after[value]) / max(before[value], 1e-9),
        "max_other_shift": max(shifts),
        "mean_other_shift": sum(shifts) / len(shifts),
    }
