"""What every judge is: a model that answers "does this image show the concept?" with a :class:`Verdict` per image.

The base class lives here, below the methods, because some methods (Adapt-then-Unlearn) need a judge while they
train; the judges themselves (NudeNet, ImageNet, CLIP, classifiers) and their registry live in ``eval.judges``. The toy
world's judge is part of the toy world (``pipelines.toy.judge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class Verdict:
    """A judge's answer for one image.

    Args:
        success (`bool`): the image shows the concept (for an attack: the attack succeeded).
        score (`float`): the judge's confidence that the concept is present, in [0, 1].
        label (`str`): what the judge sees instead (its top class), for reports.
    """

    success: bool
    score: float
    label: str


def as_image_tensor(images) -> torch.Tensor:
    """Images as a float ``(N, 3, H, W)`` CPU tensor in [0, 1], from a tensor or a list of PIL images."""
    if isinstance(images, torch.Tensor):
        return images.detach().float().cpu()
    from .images import from_pil

    return from_pil(list(images))


class Judge:
    """Base class. Subclasses implement :meth:`judge` and :meth:`knows`."""

    name: str = "judge"

    def __call__(self, images, concept: str) -> list[Verdict]:
        if not self.knows(concept):
            raise ConfigError(f"the {self.name} judge does not know the concept {concept!r}; {self.concept_hint()}")
        return self.judge(as_image_tensor(images), concept)

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        raise NotImplementedError

    def knows(self, concept: str) -> bool:
        raise NotImplementedError

    def concept_hint(self) -> str:
        return "choose a concept it can recognise"

    def describe(self) -> dict[str, Any]:
        """What the judge is, for reports (judge variants give different numbers)."""
        return {"name": self.name}
