"""The toy world: a procedural renderer of 32x32 shapes and the caption grammar that describes them.

Everything here is deterministic given a seed. A scene has four attributes: an object (the shape), a colour, a
style (solid, outline, striped) and a background. Shapes are rasterised as masks at 4x resolution and box-filtered
down to 32x32, so edges are anti-aliased the way a photo's would be. Position, size, rotation, colour shade and
background noise are jittered per image.

Every object and style has at least two natural words (``WORDS``), so a concept can be paraphrased and an attack
has somewhere to go. Some object/colour combinations (``HELD_OUT``) never appear in training; they measure whether
the toy models generalise instead of memorising.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 32
_SUPERSAMPLE = 4

OBJECTS: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "crescent")
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
STYLES: tuple[str, ...] = ("solid", "outline", "striped")
BACKGROUNDS: tuple[str, ...] = ("black", "grey", "white")

# Natural words per attribute value. The first word is the canonical one.
WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "orb"),
    "square": ("square", "box", "tile"),
    "triangle": ("triangle", "wedge"),
    "star": ("star", "pentagram"),
    "cross": ("cross", "plus sign"),
    "heart": ("heart", "valentine"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "crescent": ("crescent", "moon"),
    "solid": ("solid", "filled"),
    "outline": ("outlined", "hollow"),
    "striped": ("striped", "stripy"),
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple",),
    "orange": ("orange",),
    "black": ("black", "dark"),
    "grey": ("grey", "gray"),
    "white": ("white", "light"),
}

RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 60),
    "blue": (45, 85, 230),
    "yellow": (235, 210, 35),
    "purple": (145, 55, 200),
    "orange": (245, 135, 25),
}
_BACKGROUND_LEVEL = {"black": 18, "grey": 115, "white": 225}

# (object, colour) pairs never rendered for training: one per colour and at most one per object.
HELD_OUT: tuple[tuple[str, str], ...] = (
    ("circle", "purple"),
    ("square", "orange"),
    ("triangle", "blue"),
    ("heart", "yellow"),
    ("cross", "red"),
    ("diamond", "green"),
)


@dataclass(frozen=True)
class Scene:
    """One image's attributes."""

    object: str
    colour: str
    style: str
    background: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def concept_kind(word: str) -> str | None:
    """Which attribute a concept word names ("object", "colour", "style", "background"), synonyms included."""
    value = canonical(word)
    if value is None:
        return None
    for kind, values in (("object", OBJECTS), ("colour", COLOURS), ("style", STYLES), ("background", BACKGROUNDS)):
        if value in values:
            return kind
    return None


def canonical(word: str) -> str | None:
    """Map a concept word or synonym ("pentagram", "Stars", "outlined") to its attribute value, or ``None``."""
    word = word.strip().lower()
    for value, words in WORDS.items():
        candidates = {value, *words} | {w + "s" for w in words}
        if word in candidates:
            return value
    if word == "outline":
        return "outline"
    return None


def synonyms(value: str) -> tuple[str, ...]:
    """All words for an attribute value, the canonical one first."""
    return WORDS[canonical(value) or value]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    return f"{_article(phrase)} {phrase}"


def caption(scene: Scene, rng: np.random.Generator, *, object_word: str | None = None) -> str:
    """Describe a scene with a random template and random synonyms.

    Colour is always named unless the template is colour-free; style and background are named by some templates
    only, the way real captions leave things out.
    """
    obj = object_word or str(rng.choice(WORDS[scene.object]))
    style = str(rng.choice(WORDS[scene.style]))
    bg = str(rng.choice(WORDS[scene.background]))
    col = scene.colour
    template = int(rng.integers(10))
    if template == 0:
        return _with_article(f"{col} {obj}")
    if template == 1:
        return _with_article(f"{style} {col} {obj}")
    if template == 2:
        return "a photo of " + _with_article(f"{style} {col} {obj}")
    if template == 3:
        return "a drawing of " + _with_article(f"{col} {obj}") + f" on a {bg} background"
    if template == 4:
        return _with_article(f"{style} {col} {obj}") + f" on a {bg} background"
    if template == 5:
        return "an image of " + _with_article(f"{col} {obj}")
    if template == 6:
        return f"{col} {obj}"
    if template == 7 and scene.style == "outline":
        return "an outline of " + _with_article(f"{col} {obj}")
    if template == 7:
        return "a picture of " + _with_article(f"{style} {obj}")
    if template == 8:
        return "a picture of " + _with_article(obj)
    return _with_article(f"{obj}") + f" on a {bg} background"


def prompt_for(obj: str, colour: str | None = None, *, word: str | None = None) -> str:
    """The plain evaluation prompt "a {colour} {object}" (or "a {object}")."""
    word = word or WORDS[obj][0]
    return _with_article(f"{colour} {word}" if colour else word)


# ---------------------------------------------------------------- prompts: a concept, its replacement, the rest

# Toy-world "random labels", per attribute: (the replacement, the replacement when erasing the replacement itself).
TOY_REPLACEMENTS: dict[str, tuple[str, str]] = {
    "object": ("circle", "square"),
    "colour": ("blue", "red"),
    "style": ("solid", "striped"),
}


def toy_replacement(value: str, kind: str) -> str:
    """The toy world's "random label" for an attribute value: another value of the same attribute.

    Objects map to a circle (the plainest shape; a circle maps to a square), colours to blue (blue to red), styles to
    solid (solid to striped): the toy counterpart of "a person wearing clothes" for "a nude person".

    Args:
        value (`str`): a canonical attribute value, e.g. ``"star"`` (see :func:`canonical`).
        kind (`str`): its attribute, ``"object"``, ``"colour"`` or ``"style"`` (see :func:`concept_kind`).
    """
    replacement, fallback = TOY_REPLACEMENTS[kind]
    return fallback if value == replacement else replacement


def concept_prompt_pairs(concept: str) -> tuple[list[str], list[str]]:
    """Prompts that show ``concept``, and the same prompts with :func:`toy_replacement` in its place, pairwise.

    An object is drawn in every colour ("a red star", ... with "a red circle", ...), a colour on every object, a style
    on eight object/colour pairs ("a striped red circle", ...).

    Args:
        concept (`str`): a toy object, colour or style, or a synonym of one (``"pentagram"``).

    Returns:
        `tuple[list[str], list[str]]`: the concept's prompts and their replacements, of equal length.

    Raises:
        ValueError: ``concept`` is not a toy-world object, colour or style.
    """
    kind, value = concept_kind(concept), canonical(concept)
    if kind not in TOY_REPLACEMENTS:
        raise ValueError(f"{concept!r} is not a toy-world object, colour or style")
    other = toy_replacement(value, kind)
    if kind == "object":
        return [prompt_for(value, c) for c in COLOURS], [prompt_for(other, c) for c in COLOURS]
    if kind == "colour":
        return [prompt_for(o, value) for o in OBJECTS], [prompt_for(o, other) for o in OBJECTS]
    pairs = list(zip(OBJECTS, COLOURS * 2))
    return [f"a {WORDS[value][0]} {c} {o}" for o, c in pairs], [f"a {WORDS[other][0]} {c} {o}" for o, c in pairs]


def prompts_without(concept: str) -> list[str]:
    """Every "a {colour} {object}" prompt that names neither ``concept`` nor its synonyms: what an erasure keeps.

    Args:
        concept (`str`): a toy object or colour (a style, a background or a word outside the toy world removes none).
    """
    value = canonical(concept)
    return [prompt_for(o, c) for o in OBJECTS for c in COLOURS if value not in (o, c)]


def sample_scene(rng: np.random.Generator, *, split: str = "train") -> Scene:
    """Draw attributes uniformly: ``split="train"`` skips held-out pairs, ``"heldout"`` draws only them."""
    if split == "heldout":
        obj, col = HELD_OUT[int(rng.integers(len(HELD_OUT)))]
    else:
        while True:
            obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
            col = COLOURS[int(rng.integers(len(COLOURS)))]
            if split == "all" or (obj, col) not in HELD_OUT:
                break
    style = STYLES[int(rng.integers(len(STYLES)))]
    bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return Scene(obj, col, style, bg)


# ---------------------------------------------------------------- rendering


def _polygon(obj: str) -> list[tuple[float, float]]:
    """Vertices of a unit-radius shape centred at the origin (y down)."""
    if obj == "square":
        s = 0.78
        return [(-s, -s), (s, -s), (s, s), (-s, s)]
    if obj == "triangle":
        return [(0.0, -1.0), (0.92, 0.72), (-0.92, 0.72)]
    if obj == "diamond":
        return [(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]
    if obj == "star":
        points = []
        for i in range(10):
            radius = 1.0 if i % 2 == 0 else 0.42
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((radius * math.cos(angle), radius * math.sin(angle)))
        return points
    if obj == "cross":
        a, b = 0.3, 0.95
        return [
            (-a, -b),
            (a, -b),
            (a, -a),
            (b, -a),
            (b, a),
            (a, a),
            (a, b),
            (-a, b),
            (-a, a),
            (-b, a),
            (-b, -a),
            (-a, -a),
        ]
    if obj == "heart":
        points = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((x / 17.0, -y / 17.0 + 0.08))
        return points
    raise ValueError(f"no polygon for {obj!r}")


def _shape_mask(obj: str, cx: float, cy: float, radius: float, angle: float, size: int) -> Image.Image:
    """A binary mask ("L" mode) of the shape at ``size`` pixels."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if obj in ("circle", "crescent"):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        if obj == "crescent":
            # Cut a shifted disc out of the full one; the rotation decides which way the crescent opens.
            dx, dy = 0.45 * radius * math.cos(angle), 0.45 * radius * math.sin(angle)
            r2 = 0.85 * radius
            draw.ellipse([cx + dx - r2, cy + dy - r2, cx + dx + r2, cy + dy + r2], fill=0)
        return mask
    cos, sin = math.cos(angle), math.sin(angle)
    points = [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in _polygon(obj)]
    draw.polygon(points, fill=255)
    return mask


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Render one 32x32 RGB image of ``scene`` with random jitter drawn from ``rng``."""
    big = IMAGE_SIZE * _SUPERSAMPLE
    radius = float(rng.uniform(8.0, 12.5)) * _SUPERSAMPLE
    margin = radius + 1.5 * _SUPERSAMPLE
    cx, cy = (float(rng.uniform(margin, big - margin)) for _ in range(2))
    if scene.object == "crescent":
        angle = float(rng.uniform(0, 2 * math.pi))
    else:
        angle = math.radians(float(rng.uniform(-20, 20)))
    mask = _shape_mask(scene.object, cx, cy, radius, angle, big)

    if scene.style == "outline":
        inner = mask.filter(ImageFilter.MinFilter(2 * _SUPERSAMPLE + 1))
        mask = Image.fromarray(
            np.clip(np.asarray(mask, np.int16) - np.asarray(inner, np.int16), 0, 255).astype("uint8")
        )
    elif scene.style == "striped":
        inner = mask.filter(ImageFilter.MinFilter(2 * _SUPERSAMPLE - 1))
        yy, xx = np.mgrid[0:big, 0:big]
        period = 4 * _SUPERSAMPLE
        phase = float(rng.uniform(0, period))
        stripes = ((xx + yy + phase) % period) < period / 2
        border = np.asarray(mask, np.int16) - np.asarray(inner, np.int16)
        striped = np.where(stripes, np.asarray(inner), 0).astype(np.int16) + border
        mask = Image.fromarray(np.clip(striped, 0, 255).astype("uint8"))

    alpha = np.asarray(mask.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), np.float32)[..., None] / 255.0
    level = _BACKGROUND_LEVEL[scene.background] + float(rng.uniform(-12, 12))
    background = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), level, np.float32)
    background += rng.normal(0, 5.0, background.shape).astype(np.float32)
    colour = np.asarray(RGB[scene.colour], np.float32) + rng.uniform(-18, 18, 3).astype(np.float32)
    image = background * (1 - alpha) + colour[None, None, :] * alpha
    return Image.fromarray(np.clip(image, 0, 255).round().astype("uint8"), "RGB")


def make_dataset(n: int, seed: int, *, split: str = "train") -> tuple[np.ndarray, list[Scene]]:
    """Render ``n`` scenes. Returns uint8 images ``(n, 32, 32, 3)`` and their scenes."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    scenes = []
    for i in range(n):
        scene = sample_scene(rng, split=split)
        images[i] = np.asarray(render(scene, rng))
        scenes.append(scene)
    return images, scenes


def attribute_labels(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Integer labels per attribute head, in the order of ``OBJECTS``, ``COLOURS``, ``STYLES``, ``BACKGROUNDS``."""
    return {
        "object": np.array([OBJECTS.index(s.object) for s in scenes]),
        "colour": np.array([COLOURS.index(s.colour) for s in scenes]),
        "style": np.array([STYLES.index(s.style) for s in scenes]),
        "background": np.array([BACKGROUNDS.index(s.background) for s in scenes]),
    }


# ---------------------------------------------------------------- prompt roles: what a prompt asks of an erased model
# The studio's Compare tab and before/after previews: the concept, its paraphrases (synonyms), and other concepts
# that must survive the erasure. A concept outside the toy world gets generic prompts and is judged by name.


def compare_prompts(concept: str) -> list[str]:
    """Prompts that test an erasure: the concept, its paraphrases (synonyms), and other concepts of the same kind."""
    kind, value = concept_kind(concept), canonical(concept)
    if kind == "object":
        others = [o for o in OBJECTS if o != value][:3]
        return (
            [prompt_for(value, "red"), prompt_for(value, "blue")]
            + [prompt_for(value, "red", word=w) for w in synonyms(value)[1:]]
            + [prompt_for(o, c) for o, c in zip(others, COLOURS[1:])]
        )
    if kind == "colour":
        others = [c for c in COLOURS if c != value][:3]
        return [prompt_for("circle", value), prompt_for("square", value)] + [
            prompt_for(o, c) for o, c in zip(OBJECTS[2:], others)
        ]
    if kind == "style":
        others = [s for s in STYLES if s != value][:2]
        return [f"a {w} red star" for w in synonyms(value)] + [f"a {WORDS[s][0]} blue circle" for s in others]
    if kind == "background":
        return [f"a red star on a {w} background" for w in synonyms(value)] + ["a blue circle on a grey background"]
    return [concept, f"a photo of {concept}", f"a painting of {concept}", "a photo of a dog", "a landscape painting"]


def preview_prompts(concept: str, limit: int = 4) -> list[str]:
    """A short list for a before/after preview: the concept, a paraphrase if there is one, then other concepts."""
    prompts = compare_prompts(concept)
    roles = [prompt_role(p, concept)[0] for p in prompts]
    chosen = [prompts[roles.index("concept")]] if "concept" in roles else prompts[:1]
    if "paraphrase" in roles:
        chosen.append(prompts[roles.index("paraphrase")])
    chosen += [p for p, r in zip(prompts, roles) if r == "other"]
    return chosen[:limit]


def prompt_role(prompt: str, concept: str) -> tuple[str, str]:
    """``(role, judged concept)`` of a prompt when ``concept`` was erased.

    Roles: ``concept`` (names the erased concept), ``paraphrase`` (names it with a synonym), ``other`` (another
    concept, which must survive; in the toy world it is judged for that concept, e.g. "circle").
    """
    kind, value = concept_kind(concept), canonical(concept)
    if kind is None:
        return ("concept" if concept.lower() in prompt.lower() else "other"), concept
    mentions = _mentions(prompt)
    for mentioned, word in mentions:
        if mentioned == value:
            return ("concept" if word in (value, WORDS[value][0]) else "paraphrase"), value
    for mentioned, _ in mentions:
        if concept_kind(mentioned) == kind:
            return "other", mentioned
    return "other", value


def _mentions(prompt: str) -> list[tuple[str, str]]:
    """The attribute values a prompt names, as ``(value, word)`` pairs, synonyms and plurals included."""
    text = prompt.lower()
    found = []
    for value, words in WORDS.items():
        for word in dict.fromkeys((words[0], *words, value)):
            if re.search(rf"\b{re.escape(word)}s?\b", text):
                found.append((value, word))
                break
    return found
