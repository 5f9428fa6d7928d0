"""The toy world's judge: the trained CNN (``pipelines.toy.models.ToyJudgeNet``) that names a scene's object, colour,
style and background. ``eval.load_judge("toy")`` returns it; its features are the toy Frechet-distance extractor.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..judge import Judge, Verdict, as_image_tensor


class ToyJudge(Judge):
    """The toy world's classifier. ``features`` gives its 128-d penultimate activations (the toy FD extractor)."""

    name = "toy"

    def __init__(self, folder=None, device: str | torch.device = "cpu"):
        from safetensors.torch import load_file

        from ..sd import toy_path
        from .models import ToyJudgeNet

        folder = folder or toy_path("judge")
        config = json.loads((folder / "config.json").read_text())
        self.heads: dict[str, list[str]] = config["heads"]
        self.net = ToyJudgeNet(width=config["width"])
        self.net.load_state_dict(load_file(folder / "model.safetensors"))
        self.net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if images.shape[-1] != 32 or images.shape[-2] != 32:
            images = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return images * 2 - 1

    @torch.no_grad()
    def probabilities(self, images, batch_size: int = 512) -> dict[str, torch.Tensor]:
        """Per head, softmax probabilities ``(N, classes)`` for images in [0, 1]."""
        images = as_image_tensor(images)
        chunks = [self.net(self._prepare(c)) for c in images.split(batch_size)]
        return {h: torch.cat([c[h] for c in chunks]).softmax(-1).cpu() for h in self.heads}

    def classify(self, images) -> list[dict[str, str]]:
        """The predicted value of every head, per image."""
        probs = self.probabilities(images)
        idx = {h: p.argmax(-1).tolist() for h, p in probs.items()}
        n = len(next(iter(idx.values())))
        return [{h: self.heads[h][idx[h][i]] for h in self.heads} for i in range(n)]

    @torch.no_grad()
    def features(self, images, batch_size: int = 512) -> torch.Tensor:
        images = as_image_tensor(images)
        return torch.cat([self.net.features(self._prepare(c)).cpu() for c in images.split(batch_size)])

    def knows(self, concept: str) -> bool:
        from .world import concept_kind

        return concept_kind(concept) is not None

    def concept_hint(self) -> str:
        from .world import COLOURS, OBJECTS, STYLES

        return f"the toy world knows objects ({', '.join(OBJECTS)}), colours ({', '.join(COLOURS)}) and styles " + (
            f"({', '.join(STYLES)}), with synonyms"
        )

    def judge(self, images: torch.Tensor, concept: str) -> list[Verdict]:
        from .world import canonical, concept_kind

        head, value = concept_kind(concept), canonical(concept)
        probs = self.probabilities(images)[head]
        column = self.heads[head].index(value)
        labels = probs.argmax(-1).tolist()
        return [
            Verdict(success=labels[i] == column, score=float(probs[i, column]), label=self.heads[head][labels[i]])
            for i in range(len(labels))
        ]

    def describe(self) -> dict[str, Any]:
        return {"name": "toy", "model": "toy-world CNN (object/colour/style/background heads)"}


@lru_cache(maxsize=1)
def installed_toy_judge() -> ToyJudge:
    """The bundled toy judge, loaded once per process (methods that need a judge while they train use it)."""
    return ToyJudge()
