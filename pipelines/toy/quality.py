"""How good the toy world's models are: the measurements behind its quality bars.

``benchmarks/toy_quality.py`` runs them at full size and writes ``benchmarks/results/toy_quality.json``;
``tests/test_toy_world.py`` runs smaller versions against looser bars; the toy build's training probe uses
:func:`sample_accuracy`. Every function judges fresh renders or samples: nothing here is cached or hard-coded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .world import COLOURS, OBJECTS, WORDS, make_dataset, prompt_for


def judge_accuracy(judge, *, num_images: int = 3000, seed: int = 2024) -> dict[str, float]:
    """Accuracy of each of the judge's heads on fresh renders of every combination (held-out pairs included)."""
    images, scenes = make_dataset(num_images, seed=seed, split="all")
    predicted = judge.classify(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    truth = [s.to_dict() for s in scenes]
    return {head: float(np.mean([p[head] == t[head] for p, t in zip(predicted, truth)])) for head in truth[0]}


def sample_accuracy(
    pipe,
    judge,
    pairs: list[tuple[str, str]] | None = None,
    *,
    seeds: int = 4,
    synonym: bool = False,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
) -> dict[str, float]:
    """How often the judge finds the named object, and the named colour, in samples of "a {colour} {object}".

    Args:
        pipe: a toy-world ``StableDiffusionPipeline``.
        judge: the toy judge (``eval.load_judge("toy")``).
        pairs (`list[tuple[str, str]]`, *optional*): (object, colour) pairs; every object x colour by default.
        seeds (`int`, defaults to 4): samples per pair (seeds 1000, 1001, ...).
        synonym (`bool`, defaults to `False`): name the object by its second word ("a red pentagram").
        num_inference_steps (`int`, *optional*), guidance_scale (`float`, *optional*): the pipeline's defaults
            unless given.

    Returns:
        `dict`: ``object`` and ``colour`` (fractions) and ``samples``.
    """
    from ..sd import generate

    pairs = pairs if pairs is not None else [(o, c) for o in OBJECTS for c in COLOURS]
    rows = [(obj, col, 1000 + s) for obj, col in pairs for s in range(seeds)]
    prompts = [prompt_for(obj, col, word=WORDS[obj][1] if synonym else None) for obj, col, _ in rows]
    images = generate(
        pipe,
        prompts,
        seeds=[seed for *_, seed in rows],
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
    )
    predicted = judge.classify(images)
    return {
        "object": float(np.mean([p["object"] == obj for p, (obj, _, _) in zip(predicted, rows)])),
        "colour": float(np.mean([p["colour"] == col for p, (_, col, _) in zip(predicted, rows)])),
        "samples": len(rows),
    }


@torch.no_grad()
def clip_zero_shot(folder: str | Path | None = None, *, num_images: int = 1000, seed: int = 77) -> dict[str, float]:
    """Zero-shot accuracy of the toy CLIP on fresh renders: objects against "a {object}" prompts, colours by
    scoring every "a {colour} {object}" prompt and marginalising over objects.

    Args:
        folder (`str` or `Path`, *optional*): a ``CLIPModel`` + ``CLIPProcessor`` folder; the bundled toy CLIP
            by default.
        num_images (`int`, defaults to 1000), seed (`int`, defaults to 77): the renders (held-out pairs included).
    """
    from transformers import CLIPModel, CLIPProcessor

    from ..sd import toy_path

    folder = folder or toy_path("clip")
    model = CLIPModel.from_pretrained(folder).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    images, scenes = make_dataset(num_images, seed=seed, split="all")
    pixels = processor(images=list(images), return_tensors="pt").pixel_values

    def pooled(output):  # transformers 5 returns a model output, 4.x a tensor
        return output if torch.is_tensor(output) else output.pooler_output

    def text_embeddings(prompts: list[str]) -> torch.Tensor:
        tokens = processor(text=prompts, return_tensors="pt", padding=True)
        return torch.nn.functional.normalize(pooled(model.get_text_features(**tokens)), dim=-1)

    image_emb = torch.nn.functional.normalize(pooled(model.get_image_features(pixel_values=pixels)), dim=-1)
    object_pred = (image_emb @ text_embeddings([prompt_for(o) for o in OBJECTS]).T).argmax(-1)
    pair_logits = image_emb @ text_embeddings([prompt_for(o, c) for c in COLOURS for o in OBJECTS]).T
    colour_pred = pair_logits.view(num_images, len(COLOURS), len(OBJECTS)).logsumexp(-1).argmax(-1)
    return {
        "object": float(np.mean([OBJECTS[i] == s.object for i, s in zip(object_pred.tolist(), scenes)])),
        "colour": float(np.mean([COLOURS[i] == s.colour for i, s in zip(colour_pred.tolist(), scenes)])),
        "samples": num_images,
    }


def top_class_frequency(probabilities: torch.Tensor, names: list[str]) -> dict[str, float]:
    """How often each class is a classifier head's top choice, from its ``(N, classes)`` probabilities."""
    top = probabilities.argmax(-1)
    return {name: float((top == i).float().mean()) for i, name in enumerate(names)}
