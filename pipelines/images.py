"""Image grids and plots: sample grids before and after, loss curves. PNG out, nothing interactive."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``(N, 3, H, W)`` floats in [0, 1] -> PIL images."""
    arrays = (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


def from_pil(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images -> ``(N, 3, H, W)`` floats in [0, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1] -> uint8 in [0, 255] on the CPU, quantised as a saved PNG stores them.

    Args:
        images (`torch.Tensor`): any shape, e.g. ``(N, 3, H, W)``; values outside [0, 1] are clamped. The layout is
            kept: for ``(N, H, W, 3)`` arrays (PIL, OpenCV) call ``to_uint8(images).permute(0, 2, 3, 1).numpy()``.

    Returns:
        `torch.Tensor` of dtype `torch.uint8`: ``round(255 · clamp(x, 0, 1))``, computed in fp32.
    """
    return (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def upscale(image: Image.Image, min_size: int) -> Image.Image:
    """Enlarge a small image by a whole factor (nearest neighbour, so pixels stay sharp) to at least ``min_size`` wide.

    Args:
        image (`PIL.Image.Image`): e.g. a 32 px toy-world sample.
        min_size (`int`): the smallest width wanted; an image at least this wide is returned as it is.

    Returns:
        `PIL.Image.Image`: ``image`` scaled by ``ceil(min_size / width)``.
    """
    if image.width >= min_size:
        return image
    factor = int(np.ceil(min_size / image.width))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def image_grid(
    rows: Sequence[Sequence[Image.Image]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    min_tile: int = 96,
    gap: int = 4,
) -> Image.Image:
    """A labelled grid. Small tiles (the toy world's 32 px) are upscaled with nearest-neighbour to ``min_tile``."""
    tiles = [[upscale(im, min_tile) for im in row] for row in rows]
    tw, th = tiles[0][0].size
    ncols = max(len(r) for r in tiles)
    font = _font(12)
    left = 0
    if row_labels:
        left = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(s, font=font)) for s in row_labels) + 10
    top = (22 if col_labels else 0) + (24 if title else 0)
    width = left + ncols * (tw + gap) + gap
    height = top + len(tiles) * (th + gap) + gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((gap, 4), title, fill=(0, 0, 0), font=_font(14))
    if col_labels:
        y = 24 if title else 2
        for c, label in enumerate(col_labels):
            draw.text((left + gap + c * (tw + gap), y + 2), label, fill=(40, 40, 40), font=font)
    for r, row in enumerate(tiles):
        y = top + gap + r * (th + gap)
        if row_labels:
            draw.text((4, y + th // 2 - 6), row_labels[r], fill=(0, 0, 0), font=font)
        for c, tile in enumerate(row):
            canvas.paste(tile, (left + gap + c * (tw + gap), y))
    return canvas


def before_after_grid(
    before: torch.Tensor,
    after: torch.Tensor,
    prompts: Sequence[str],
    seeds: Sequence[int],
    *,
    title: str | None = None,
) -> Image.Image:
    """Rows are prompts; columns are the seeds of the base model, then the same seeds of the erased model.

    ``before`` and ``after`` hold ``len(prompts) * len(seeds)`` images, prompt-major.
    """
    n = len(seeds)
    b, a = to_pil(before), to_pil(after)
    rows = [b[i * n : (i + 1) * n] + a[i * n : (i + 1) * n] for i in range(len(prompts))]
    cols = [f"base s{s}" for s in seeds] + [f"erased s{s}" for s in seeds]
    return image_grid(rows, row_labels=list(prompts), col_labels=cols, title=title)


def plot_curves(
    series: dict[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    ylabel: str = "loss",
    title: str | None = None,
) -> Path:
    """Line plot of one or more series to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, values in series.items():
        xs = list(x) if x is not None else list(range(1, len(values) + 1))
        ax.plot(xs[: len(values)], list(values), label=name, linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(series) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
