"""Architectures of the toy world's models, and the CLIP tokenizer built offline.

The diffusion components are stock diffusers / transformers classes with small configs, so the toy Stable Diffusion
loads with ``StableDiffusionPipeline.from_pretrained(folder)`` exactly like SD v1.4. Only the judge is our own
module: a small CNN with one head per scene attribute.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import torch
from torch import nn

from .world import BACKGROUNDS, COLOURS, OBJECTS, STYLES

# CLIP's BPE: 256 byte symbols, the same with "</w>", 48,894 merges, then <|startoftext|> and <|endoftext|>.
CLIP_VOCAB_SIZE = 49408
CLIP_NUM_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
# SD v1.x pads prompts to 77 tokens. Toy captions are under 20 tokens, so the toy encoder reads 32 (prompt plus room
# for adversarial prefixes); the pipeline pads to ``tokenizer.model_max_length`` either way. This halves the cost of
# cross-attention in training on 2 CPU cores.
MAX_PROMPT_TOKENS = 32

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=32,
)

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128, 128),
    layers_per_block=1,
    cross_attention_dim=96,
    attention_head_dim=8,
    norm_num_groups=32,
)

# The toy SD's text encoder: a CLIPTextModel trained jointly with the UNet (see build.py for why it is not the toy
# CLIP's text tower). 96 wide: the 64-wide tower crowded the objects' token states together (cosine 0.83 between
# "star" and "cross"), so a linear edit of the cross-attention that erases one object moved its neighbours too.
TEXT_ENCODER_CONFIG = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=96,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    max_position_embeddings=MAX_PROMPT_TOKENS,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)

# Stable Diffusion v1.x's scheduler, as DDIM (PNDM at 25 steps breaks down on the toy model; ENVIRONMENT.md).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)

# The toy CLIP's text tower is its own, 64 wide (the token embedding is most of the package's size budget).
CLIP_TEXT_CONFIG = dict(TEXT_ENCODER_CONFIG, hidden_size=64, intermediate_size=256)
CLIP_VISION_CONFIG = dict(
    image_size=32, patch_size=4, hidden_size=96, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4
)
CLIP_PROJECTION_DIM = 64
# Images go to CLIP in [0, 1] and are normalised with these statistics (the toy world's own, not OpenAI's).
CLIP_IMAGE_MEAN = (0.45, 0.45, 0.45)
CLIP_IMAGE_STD = (0.3, 0.3, 0.3)

HEADS: dict[str, tuple[str, ...]] = {"object": OBJECTS, "colour": COLOURS, "style": STYLES, "background": BACKGROUNDS}


class ToyJudgeNet(nn.Module):
    """A small CNN with one classification head per scene attribute.

    Input: images in [-1, 1], shape ``(B, 3, 32, 32)``. Output: a dict of logits per head. ``features`` returns the
    128-d penultimate activations, the toy world's feature extractor for Frechet distances.
    """

    feature_dim = 128

    def __init__(self, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())

        self.body = nn.Sequential(
            block(3, width, 1),
            block(width, width, 1),
            block(width, 2 * width, 2),
            block(2 * width, 2 * width, 1),
            block(2 * width, 4 * width, 2),
            block(4 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(4 * width, len(values)) for name, values in HEADS.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(images)
        return {name: head(feats) for name, head in self.heads.items()}


class ToyJudgeResNet(nn.Module):
    """The held-out toy judge (``toy-heldout``): a small pre-activation ResNet, unlike :class:`ToyJudgeNet` on purpose.

    A judge that a model was optimised against is no longer a fair measure of it (the toy GAN's recipe trains
    against the toy judge), so the second judge differs in everything but its heads and training data: residual
    stages instead of a plain stack, BatchNorm + ReLU instead of GroupNorm + SiLU, max-pooling instead of strided
    convolutions, a different width and seed. Input: images in [-1, 1], ``(B, 3, 32, 32)``; output: logits per head.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96)):
        super().__init__()

        def unit(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 3, 1, 1, bias=False))

        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.stages = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        cin = widths[0]
        for cout in widths:
            self.stages.append(nn.Sequential(unit(cin, cout), unit(cout, cout)))
            self.shortcuts.append(nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity())
            cin = cout
        self.norm = nn.BatchNorm2d(cin)
        self.feature_dim = cin
        self.heads = nn.ModuleDict({name: nn.Linear(cin, len(values)) for name, values in HEADS.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for i, (stage, shortcut) in enumerate(zip(self.stages, self.shortcuts)):
            if i > 0:  # 32 -> 16 -> 8: downsample between stages
                x = nn.functional.max_pool2d(x, 2)
            x = stage(x) + shortcut(x)
        return nn.functional.relu(self.norm(x)).mean((2, 3))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(images)
        return {name: head(feats) for name, head in self.heads.items()}


def judge_net_from_config(config: dict) -> nn.Module:
    """The judge network a ``config.json`` describes: ``{"architecture": "resnet", "widths": [...]}`` or the toy
    judge's CNN (``{"width": 32}``; configs written before the held-out judge name no architecture)."""
    architecture = config.get("architecture", "cnn")
    if architecture == "resnet":
        return ToyJudgeResNet(widths=tuple(config["widths"]))
    if architecture == "cnn":
        return ToyJudgeNet(width=config["width"])
    raise ValueError(f"unknown toy judge architecture {architecture!r} in its config.json; expected 'cnn' or 'resnet'")


# ---------------------------------------------------------------- the CLIP tokenizer, offline


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-to-symbol table: printable bytes map to themselves, the rest to code points from 256 up."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            symbols.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, symbols)))


def write_clip_tokenizer(folder: str | os.PathLike, model_max_length: int = MAX_PROMPT_TOKENS) -> Path:
    """Write OpenAI CLIP's tokenizer (vocab.json, merges.txt) into ``folder`` from the BPE file open-clip ships.

    The result tokenizes exactly like ``openai/clip-vit-large-patch14`` (49,408 tokens; bos 49406, eos 49407, and
    Stable Diffusion pads with eos).
    """
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - open-clip-torch is in the eval extra
        raise ImportError("Building the CLIP tokenizer needs open-clip-torch: pip install open-clip-torch") from err
    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : CLIP_NUM_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special = {k: tokenizer_config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return folder
