"""Generic training helpers, for any model: diffusion, GAN or toy."""

from __future__ import annotations

import torch


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move an exponential moving average of weights one step towards a model: θ_ema ← decay·θ_ema + (1 − decay)·θ.

    Args:
        ema (`torch.nn.Module`): the running average, updated in place; same architecture as ``model``.
        model (`torch.nn.Module`): the model being trained.
        decay (`float`): how much of the average is kept per step, e.g. 0.999.
    """
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.lerp_(p, 1 - decay)
