"""The toy world's judges: trained CNNs that name a scene's object, colour, style and background.

``eval.load_judge("toy")`` returns the toy judge (``pipelines.toy.models.ToyJudgeNet``); its features are the toy
Frechet-distance extractor. ``eval.load_judge("toy-heldout")`` returns the held-out judge (``ToyJudgeResNet``, a
different architecture and seed, the same heads and distortion training): the measure of any model that was
optimised against the toy judge (the toy GAN's recipe is), whose verdicts on such a model would be circular.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from ..judge import Judge, Verdict, as_image_tensor


class ToyJudge(Judge):
    """The toy world's classifier. ``features`` gives its penultimate activations (the toy FD extractor: 128-d).

    Args:
        folder (`Path`, *optional*): a judge folder (``config.json`` with the architecture and heads, and
            ``model.safetensors``); the bundled ``assets/<subfolder>`` by default.
        device (`str` or `torch.device`, defaults to `"cpu"`): where the judge runs.
    """

    name = "toy"
    subfolder = "judge"
    """The bundled folder under ``pipelines/toy/assets``."""

    def __init__(self, folder=None, device: str | torch.device = "cpu"):
        from pathlib import Path

        from safetensors.torch import load_file

        from ..sd import toy_path
        from .models import judge_net_from_config

        folder = Path(folder) if folder else toy_path(self.subfolder)
        config = json.loads((folder / "config.json").read_text())
        self.heads: dict[str, list[str]] = config["heads"]
        self.architecture = config.get("architecture", "cnn")
        # Built off the global random stream: the initial weights are overwritten at once, and a judge loaded in a
        # seeded run (a method's perceptual term, the cached ``installed_toy_judge``) must not shift that run's draws.
        with torch.random.fork_rng(devices=[]):
            self.net = judge_net_from_config(config)
        # Weights may be stored in fp16 (the package budget); the judge computes in fp32.
        weights = load_file(folder / "model.safetensors")
        self.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
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
        kind = "ResNet" if self.architecture == "resnet" else "CNN"
        return {"name": self.name, "model": f"toy-world {kind} (object/colour/style/background heads)"}


class HeldOutToyJudge(ToyJudge):
    """``toy-heldout``: the toy world's second judge, trained apart (``ToyJudgeResNet``, another seed), for measuring
    anything that was optimised against the toy judge. Same heads, concepts and API as :class:`ToyJudge`."""

    name = "toy-heldout"
    subfolder = "judge_heldout"


@lru_cache(maxsize=1)
def installed_toy_judge() -> ToyJudge:
    """The bundled toy judge, loaded once per process (methods that need a judge while they train use it)."""
    return ToyJudge()
