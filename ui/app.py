"""The Erasure Studio in the browser: erase a concept, compare, attack, score, and keep the artifact.

```
erasure-studio demo [--model toy|PATH] [--judge toy] [--host 127.0.0.1] [--port 7860]
```

```python
from ui.app import build_demo

demo = build_demo(model="toy")          # or model=<a StableDiffusionPipeline>, gan_model=<a GANBundle>, judge=...
demo.launch(server_name="127.0.0.1")
```

Tabs:

- **Erase**: the base model, the method (every registered one, diffusion and GAN, with its paper's one-line
  summary), the concept, and the method's settings, generated from its config dataclass and starting from the
  ``"toy"`` preset (a few key fields, the rest under "Advanced"). The run shows live progress and loss, then the
  same prompts and seeds before and after, and is saved as an artifact folder.
- **Compare**: base and erased model on the same prompts and seeds, with the concept's paraphrases (toy-world
  synonyms) and other concepts, and the judge's verdict on every image.
- **Attack**: UnlearnDiffAtk on one prompt against the erased model (a short schedule by default, for a CPU).
- **Score**: the scorecard of :mod:`eval.scorecard` (leaderboard columns, rates chart, JSON).
- **Artifacts**: download the current artifact folder as a zip; load an earlier artifact folder.

Every event handler is a plain module-level function (:func:`run_erase`, :func:`run_compare`, :func:`run_attack`,
:func:`run_score`, :func:`zip_artifact`, :func:`load_artifact`, ...). Each takes the :class:`Studio` (what every
browser tab shares: the models, the judge, the one-run-at-a-time lock) and a :class:`Session` (one tab's current
erased model), so tests call them without a server. Bad input raises ``gradio.Error`` with the
:class:`~pipelines.errors.StudioError` message (shown in the page, never a traceback); a second run while one is
going gets a visible warning. Gradio is imported lazily, so importing this module (as ``erasure-studio`` does for
every command) stays cheap.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
import typing  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

from pipelines.errors import ConfigError, ModelNotFoundError, StudioError  # noqa: E402

STABLE_DIFFUSION = "stable_diffusion"
STYLEGAN2 = "stylegan2"
DEFAULT_METHOD = "esd"
BUSY_MESSAGE = (
    "Another run is going (an erasure, comparison, attack or scorecard). Wait for it to finish, or press "
    "Stop on the Erase tab."
)
NO_ERASED_MODEL = "There is no erased model yet: run an erasure on the Erase tab, or load an artifact folder."
COMMON_KEY_FIELDS = ("max_train_steps", "learning_rate", "seed")
# The method-specific fields shown next to the common ones; a method not listed gets its first few own fields.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "esd": ("train_method", "negative_guidance"),
    "advunlearn": ("train_method", "attack_steps", "retain_loss_weight"),
    "adapt_then_unlearn": ("adapt_fraction", "repulsion", "gamma"),
}
HIDDEN_FIELDS = ("concept",)  # typed in its own box
MAX_COMPARE_PROMPTS = 24
MAX_SEEDS = 8
GAN_SAMPLES_PER_SEED = 4
PREVIEW_TILE = 96


def _gradio():
    """Import gradio, or tell the user how to install it."""
    from pipelines.errors import require

    return require("gradio", "ui", "The studio")


# ---------------------------------------------------------------- studio-wide and per-tab state


@dataclass(eq=False)
class Studio:
    """What every browser tab of one studio shares: the default models, the judge, and the run lock.

    Args:
        model (`str` or pipeline, defaults to `"toy"`): base model of the diffusion methods: ``"toy"``, a local
            diffusers folder, or a ``StableDiffusionPipeline`` already in memory (then its name, e.g.
            ``tiny-random-sd-0``, selects it in the model box).
        gan_model (`str` or `GANBundle`, defaults to `"toy"`): base model of the GAN methods, likewise.
        judge (`str` or `Judge`, defaults to `"toy"`): the judge of concepts (see ``eval.load_judge``). A GAN bundle
            that carries its own judge uses that one.
        output_dir (`Path`): where erasures are saved as artifact folders.
        device (`str`, *optional*): device for models loaded by name (CPU by default).
        num_inference_steps (`int`, *optional*): sampler steps of every preview, comparison and attack check
            (the pipeline's default when unset).
        seeds (`tuple[int, ...]`): seeds of the before/after previews and the default comparison seeds.
        save_samples (`bool`, defaults to `True`): write the artifact's before/after sample grid (``samples.png``,
            sampled at the pipeline's default steps).
    """

    model: Any = "toy"
    gan_model: Any = "toy"
    judge: Any = "toy"
    output_dir: Path = Path("runs/studio")
    device: str | None = None
    num_inference_steps: int | None = None
    seeds: tuple[int, ...] = (0, 1)
    save_samples: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    scratch_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erasure-studio-")), repr=False)
    _models: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _judge: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        weakref.finalize(self, shutil.rmtree, str(self.scratch_dir), True)
        for obj, model_type in ((self.model, STABLE_DIFFUSION), (self.gan_model, STYLEGAN2)):
            if not isinstance(obj, (str, os.PathLike)):
                self._models[(model_type, model_label(obj))] = obj

    def default_model(self, model_type: str) -> str:
        """The text the model box shows by default for a method of ``model_type``."""
        return model_label(self.gan_model if model_type == STYLEGAN2 else self.model)

    def load_model(self, name_or_path: str, model_type: str):
        """The base model named in the model box: an in-memory model's name, ``"toy"``, or a local path (cached).

        Raises:
            ModelNotFoundError: the path does not exist, or the toy weights are not built yet.
        """
        name = (name_or_path or "").strip() or self.default_model(model_type)
        key = (model_type, name)
        if key in self._models:
            return self._models[key]
        if name != "toy":
            path = Path(name).expanduser()
            if not path.exists() and (os.sep in name or name.startswith((".", "~")) or model_type == STYLEGAN2):
                raise ModelNotFoundError(
                    f"the model path {name} does not exist; give 'toy' or a local "
                    + ("StyleGAN2 checkpoint or bundle folder" if model_type == STYLEGAN2 else "diffusers folder")
                )
        if model_type == STYLEGAN2:
            import gan

            model = gan.load(name, device=self.device)
        else:
            from pipelines.sd import load_sd

            model = load_sd(name, device=self.device)
        self._models[key] = model
        return model

    def judge_for(self, model: Any = None):
        """The judge of ``model``'s concepts: the GAN bundle's own judge if it carries one, else the studio's."""
        if model is not None and getattr(model, "judge", None) is not None and is_gan(model):
            return model.judge
        if self._judge is None:
            from eval.judges import load_judge

            self._judge = load_judge(self.judge)
        return self._judge


@dataclass(eq=False)
class Session:
    """One browser tab's current work: the base model, the erased model and where its artifact lives."""

    model_type: str | None = None
    base: Any = None
    base_name: str = ""
    erased: Any = None
    method: str = ""
    concept: str = ""
    result: Any = None
    artifact_dir: Path | None = None
    attack_report: Any = None


def new_session() -> Session:
    """A fresh :class:`Session` (what ``gr.State`` calls for each browser tab)."""
    return Session()


def model_label(model: Any) -> str:
    """The name of a model for the model box: its name or path, or the name an in-memory model records."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    source = getattr(model, "studio_source", None) or {}
    if source.get("name_or_path"):
        return str(source["name_or_path"])
    metadata = getattr(model, "metadata", None) or {}
    return str(metadata.get("name_or_path") or "in-memory model")


def is_gan(model: Any) -> bool:
    return hasattr(model, "generator") and hasattr(model, "latent_dim")


def toy_is_built(part: str) -> bool:
    """Whether the toy world's ``part`` ("sd", "gan", "judge", "clip") weights are on disk."""
    from pipelines.sd import TOY_DIR

    marker = {"sd": "model_index.json"}.get(part, "config.json")
    return (TOY_DIR / part / marker).is_file()


# ---------------------------------------------------------------- user-facing errors


def user_error(message: str) -> Exception:
    """A ``gradio.Error`` that shows ``message`` in the page (no traceback in the page or the server log)."""
    return _gradio().Error(message, title="Erasure Studio", print_exception=False)


@contextmanager
def studio_errors() -> Iterator[None]:
    """Turn a :class:`StudioError` (bad input, missing weights, a broken artifact) into a message in the page."""
    try:
        yield
    except StudioError as err:
        raise user_error(str(err)) from None


def _warn(message: str) -> None:
    _gradio().Warning(message, title="Erasure Studio")


def _busy_markdown() -> str:
    return f"**Busy.** {BUSY_MESSAGE}"


def _skip():
    return _gradio().skip()


# ---------------------------------------------------------------- methods and their settings


@dataclass(frozen=True)
class SettingSpec:
    """One control of a method's settings, derived from a field of its config dataclass.

    Args:
        name (`str`): the config field (and CLI flag) name.
        kind (`str`): ``choice``, ``bool``, ``int``, ``float``, ``int_list``, ``float_list``, ``text`` or ``json``.
        value: the starting value (the ``"toy"`` preset's, else the field's default).
        help (`str`): the field's help text.
        choices (`tuple`): the allowed values of a ``choice``.
        optional (`bool`): the field accepts ``None`` (an empty box).
        key (`bool`): shown up front rather than under "Advanced".
    """

    name: str
    kind: str
    value: Any
    help: str
    choices: tuple[Any, ...] = ()
    optional: bool = False
    key: bool = False


def method_summary(name: str) -> str:
    """Markdown: the method's family, what it trains, its one-line summary, its paper and code."""
    from erasure import get_method_class

    method = get_method_class(name)
    kind = "GAN (StyleGAN2)" if method.model_type == STYLEGAN2 else "diffusion (Stable Diffusion)"
    lines = [
        f"**{method.name}** · {kind} · trains `{', '.join(getattr(method, 'targets', ()) or ('?',))}`",
        "",
        method.summary,
        "",
        f"*Paper:* {method.paper}" + (f" · [code]({method.code})" if getattr(method, "code", "") else ""),
    ]
    return "\n".join(lines)


def _field_kind(hint: Any) -> tuple[str, tuple[Any, ...], bool]:
    """(kind, choices, optional) of a config field's type hint."""
    optional = False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        optional = len(rest) < len(args)
        if len(rest) != 1:
            return "json", (), optional
        hint = rest[0]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "choice", tuple(args), optional
    if hint is bool:
        return "bool", (), optional
    if hint is int:
        return "int", (), optional
    if hint is float:
        return "float", (), optional
    if hint is str:
        return "text", (), optional
    if origin in (list, tuple) and args and args[0] in (int, float):
        return ("int_list" if args[0] is int else "float_list"), (), optional
    return "json", (), optional


def setting_specs(name: str) -> list[SettingSpec]:
    """The settings controls of a method, one per config field (``concept`` excepted), in declaration order.

    Values start from the method's ``"toy"`` preset (the studio's default world), else the field defaults. The
    common key fields (steps, learning rate, seed) and a few method-specific ones (:data:`KEY_FIELDS`, else the
    method's first own fields) are marked ``key``; the rest go under "Advanced".
    """
    from erasure import EraseConfig, get_config_class

    cls = get_config_class(name)
    hints = typing.get_type_hints(cls)
    preset = cls.presets.get("toy", {})
    helps = cls.help()
    base_fields = {f.name for f in dataclasses.fields(EraseConfig)}
    specs = []
    for f in dataclasses.fields(cls):
        if f.name in HIDDEN_FIELDS:
            continue
        kind, choices, optional = _field_kind(hints[f.name])
        if f.name in preset:
            value = preset[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        specs.append(SettingSpec(f.name, kind, value, helps.get(f.name, ""), choices, optional))
    wanted = list(KEY_FIELDS.get(cls.method, ()))
    if not wanted:
        own = [s.name for s in specs if s.name not in base_fields and s.kind in ("choice", "bool", "int", "float")]
        wanted = own[:3]
    key_names = set(COMMON_KEY_FIELDS) | set(wanted)
    return [dataclasses.replace(s, key=s.name in key_names) for s in specs]


def _format_setting(spec: SettingSpec) -> Any:
    """The value a control starts with."""
    if spec.kind in ("int_list", "float_list"):
        return " ".join(str(v) for v in spec.value) if spec.value else ""
    if spec.kind == "json":
        return "" if spec.value is None else json.dumps(spec.value)
    if spec.kind == "text":
        return spec.value or ""
    if spec.kind == "choice":
        return None if spec.value is None else str(spec.value)
    return spec.value


def convert_setting(spec: SettingSpec, value: Any) -> Any:
    """A control's value as the config field wants it; a :class:`ConfigError` that names the field if it is not."""
    if spec.kind == "bool":
        return bool(value)
    if value is None or (isinstance(value, str) and not value.strip()):
        if spec.optional:
            return None
        if spec.kind == "text":
            return ""
        raise ConfigError(f"{spec.name} is empty; give a value ({spec.help})")
    try:
        if spec.kind == "int":
            number = float(value)
            if not number.is_integer():
                raise ConfigError(f"{spec.name} must be a whole number, got {value!r}")
            return int(number)
        if spec.kind == "float":
            return float(value)
        if spec.kind == "choice":
            for choice in spec.choices:
                if str(choice) == str(value):
                    return choice
            raise ConfigError(
                f"{spec.name}={value!r} is not allowed; choose one of {', '.join(map(str, spec.choices))}"
            )
        if spec.kind in ("int_list", "float_list"):
            cast = int if spec.kind == "int_list" else float
            return [cast(part) for part in re.split(r"[,\s]+", str(value).strip()) if part]
        if spec.kind == "json":
            return json.loads(value) if isinstance(value, str) else value
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{spec.name}: cannot read {value!r} as {spec.kind.replace('_', ' of ')}") from None
    return str(value).strip()


def settings_from_controls(layout: Sequence[tuple[str, SettingSpec]], method: str, values: Sequence[Any]) -> dict:
    """The selected method's settings from the values of every method's controls (in ``layout`` order)."""
    with studio_errors():
        return {spec.name: convert_setting(spec, v) for (m, spec), v in zip(layout, values) if m == method}


def _parse_settings(settings: Any) -> dict[str, Any]:
    if settings is None or settings == "":
        return {}
    if isinstance(settings, str):
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f'the settings are not valid JSON ({err}); give an object such as {{"seed": 1}}'
            ) from None
    if not isinstance(settings, dict):
        raise ConfigError('the settings must be a JSON object of config fields, e.g. {"max_train_steps": 50}')
    return dict(settings)


# ---------------------------------------------------------------- prompts: the concept, its paraphrases, the others


def compare_prompts(concept: str) -> list[str]:
    """Prompts that test an erasure: the concept, its paraphrases (toy-world synonyms), and other concepts."""
    from pipelines.toy.world import COLOURS, OBJECTS, STYLES, WORDS, canonical, concept_kind, prompt_for, synonyms

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
    """A short list for the before/after preview: the concept, a paraphrase if there is one, then other concepts."""
    prompts = compare_prompts(concept)
    roles = [prompt_role(p, concept)[0] for p in prompts]
    chosen = [prompts[roles.index("concept")]] if "concept" in roles else prompts[:1]
    if "paraphrase" in roles:
        chosen.append(prompts[roles.index("paraphrase")])
    chosen += [p for p, r in zip(prompts, roles) if r == "other"]
    return chosen[:limit]


def _toy_mentions(prompt: str) -> list[tuple[str, str]]:
    """The toy-world values a prompt names, as ``(value, word)`` pairs, synonyms and plurals included."""
    from pipelines.toy.world import WORDS

    text = prompt.lower()
    found = []
    for value, words in WORDS.items():
        for word in dict.fromkeys((words[0], *words, value)):
            if re.search(rf"\b{re.escape(word)}s?\b", text):
                found.append((value, word))
                break
    return found


def prompt_role(prompt: str, concept: str) -> tuple[str, str]:
    """``(role, judged concept)`` of a comparison prompt.

    Roles: ``concept`` (names the erased concept), ``paraphrase`` (names it with a synonym), ``other`` (another
    concept, which must survive; in the toy world it is judged for that concept, e.g. "circle").
    """
    from pipelines.toy.world import WORDS, canonical, concept_kind

    kind, value = concept_kind(concept), canonical(concept)
    if kind is None:
        return ("concept" if concept.lower() in prompt.lower() else "other"), concept
    mentions = _toy_mentions(prompt)
    for mentioned, word in mentions:
        if mentioned == value:
            return ("concept" if word in (value, WORDS[value][0]) else "paraphrase"), value
    for mentioned, _ in mentions:
        if concept_kind(mentioned) == kind:
            return "other", mentioned
    return "other", value


def _parse_prompts(text: str | None, concept: str) -> list[str]:
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    prompts = prompts or compare_prompts(concept)
    if len(prompts) > MAX_COMPARE_PROMPTS:
        raise ConfigError(f"{len(prompts)} prompts is too many for one comparison; give at most {MAX_COMPARE_PROMPTS}")
    return prompts


def parse_seeds(text: Any) -> list[int]:
    """Seeds from "0 1 2" or "0, 1, 2" (or a number)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        parts = [str(int(text))]
    else:
        parts = [p for p in re.split(r"[,\s]+", str(text or "").strip()) if p]
    if not parts:
        raise ConfigError("give at least one seed, e.g. 0 1")
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"seeds must be whole numbers separated by spaces, got {text!r}") from None
    if any(s < 0 for s in seeds) or len(seeds) > MAX_SEEDS:
        raise ConfigError(f"give 1 to {MAX_SEEDS} seeds, each 0 or more; got {text!r}")
    return seeds


# ---------------------------------------------------------------- sampling helpers


def _upscale(image, min_size: int = 128):
    from PIL import Image

    if image.width >= min_size:
        return image
    factor = -(-min_size // image.width)
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _sample_sd(studio: Studio, pipe, prompts: Sequence[str], seeds: Sequence[int]):
    """Images ``(len(prompts) * len(seeds), 3, H, W)``, prompt-major, each from its own seed."""
    from pipelines.sd import generate

    flat_prompts = [p for p in prompts for _ in seeds]
    flat_seeds = [s for _ in prompts for s in seeds]
    return generate(pipe, flat_prompts, seeds=flat_seeds, num_inference_steps=studio.num_inference_steps)


def _sample_gan(bundle, seeds: Sequence[int]):
    import torch

    return torch.cat([bundle.sample(GAN_SAMPLES_PER_SEED, seed=s) for s in seeds])


def preview_grid(studio: Studio, model, concept: str):
    """A labelled grid of ``model``'s samples: preview prompts x seeds (diffusion) or seeds x latents (GAN)."""
    from pipelines.images import image_grid, to_pil

    seeds = list(studio.seeds)
    if is_gan(model):
        images = to_pil(_sample_gan(model, seeds))
        n = GAN_SAMPLES_PER_SEED
        rows = [images[i * n : (i + 1) * n] for i in range(len(seeds))]
        return image_grid(rows, row_labels=[f"seed {s}" for s in seeds], min_tile=PREVIEW_TILE)
    prompts = preview_prompts(concept)
    images = to_pil(_sample_sd(studio, model, prompts, seeds))
    n = len(seeds)
    rows = [images[i * n : (i + 1) * n] for i in range(len(prompts))]
    return image_grid(rows, row_labels=prompts, col_labels=[f"seed {s}" for s in seeds], min_tile=PREVIEW_TILE)


def erased_model(base: Any, result: Any):
    """The erased model in memory: the base with the result's components in (nothing is copied or saved)."""
    if result.artifact_kind == "gan_generator":
        from gan.bundle import GANBundle

        return GANBundle(
            generator=result.components["generator"],
            discriminator=base.discriminator,
            latent_dim=base.latent_dim,
            metadata=dict(base.metadata),
            judge=base.judge,
        )
    from pipelines.artifacts import _assemble

    return _assemble(base, result.artifact_kind, result.components)


def loss_frame(history: Sequence[dict[str, float]]):
    """The loss history as a long table (step, value, series) for ``gr.LinePlot``; ``None`` (a blank plot) if empty.

    Gradio's line plot draws no line once it was given an empty table, so an empty history clears it instead.
    """
    import pandas as pd

    rows = []
    for step, logs in enumerate(history, 1):
        keys = [k for k in logs if "loss" in k] or [k for k, v in logs.items() if isinstance(v, float)][:1]
        rows += [{"step": step, "value": float(logs[k]), "series": k} for k in keys]
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["step", "value", "series"])


def _unique_dir(root: Path, name: str) -> Path:
    path, n = root / name, 2
    while path.exists():
        path, n = root / f"{name}-{n}", n + 1
    return path


# ---------------------------------------------------------------- Erase


class EraseUpdate(NamedTuple):
    """Outputs of :func:`run_erase`, in the order of the Erase tab's output components."""

    status: Any
    loss: Any
    before: Any
    after: Any


class RunStopped(Exception):
    """Raised inside a run's callback when the user pressed Stop."""


class _RunMonitor:
    """Runs an erasure in a worker thread and records its progress for the page to poll."""

    def __init__(self, total: int, stop: threading.Event):
        self.step = 0
        self.total = total
        self.stop = stop
        self.result: Any = None
        self.error: BaseException | None = None
        self._history: list[dict[str, float]] = []
        self._lock = threading.Lock()

    def callback(self, step: int, total: int, logs: dict[str, float]) -> None:
        with self._lock:
            self.step, self.total = step, total
            self._history.append(dict(logs))
        if self.stop.is_set():
            raise RunStopped()

    def history(self) -> list[dict[str, float]]:
        with self._lock:
            return list(self._history)

    def run(self, method: Any, model: Any) -> None:
        try:
            self.result = method.erase(model, callback=self.callback)
        except BaseException as err:  # handed to the page's thread, which shows or re-raises it
            self.error = err


def _status_line(method: str, concept: str, step: int, total: int, history: list[dict], started: float) -> str:
    loss = ""
    if history:
        key = next((k for k in history[-1] if "loss" in k), None)
        if key is not None:
            loss = f" · {key} {history[-1][key]:.4g}"
    return f"**{method}** erasing '{concept}': step {step}/{total}{loss} · {time.perf_counter() - started:.0f} s"


def run_erase(
    studio: Studio,
    session: Session,
    model: str | None,
    method: str,
    concept: str,
    settings: dict[str, Any] | str | None = None,
    progress: Any = None,
) -> Iterator[EraseUpdate]:
    """Erase ``concept`` from the base model with ``method``; yields live updates, then the final result.

    Args:
        studio (`Studio`), session (`Session`): shared and per-tab state.
        model (`str`): ``"toy"``, a local folder, or an in-memory model's name; empty means the default.
        method (`str`): a registered method.
        concept (`str`): the concept to erase.
        settings (`dict` or JSON `str`, *optional*): config fields; the rest come from the ``"toy"`` preset.
        progress (`gr.Progress`, *optional*): receives ``(step, total)`` after every optimisation step.

    Yields:
        `EraseUpdate`: a status line, the loss table, the before and after preview grids (``gr.skip()`` where
        unchanged). The last one also says where the artifact folder was saved.
    """
    concept = (concept or "").strip()
    if not concept:
        raise user_error("The concept is empty: type the concept to erase, e.g. 'star'.")
    with studio_errors():
        from erasure import get_method_class, make_config

        method_class = get_method_class(method or "")
        preset = "toy" if "toy" in method_class.config_class.presets else None
        config = make_config(method_class.name, preset=preset, **{**_parse_settings(settings), "concept": concept})
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        yield EraseUpdate(_busy_markdown(), _skip(), _skip(), _skip())
        return
    studio.stop_requested.clear()  # from here on, Stop ends this run (also while the base preview renders)
    worker: threading.Thread | None = None
    try:
        with studio_errors():
            base = studio.load_model(model, method_class.model_type)
            judge = studio.judge_for(base)
            if not judge.knows(concept):
                raise ConfigError(
                    f"the {judge.name} judge does not know the concept {concept!r}; {judge.concept_hint()} "
                    "(start the studio with --judge to use another judge)"
                )
            before = preview_grid(studio, base, concept)
        started = time.perf_counter()
        yield EraseUpdate(f"**{method_class.name}** erasing '{concept}': starting …", None, before, None)

        monitor = _RunMonitor(config.max_train_steps, studio.stop_requested)
        worker = threading.Thread(
            target=monitor.run, args=(method_class(config), base), name="erasure-studio-run", daemon=True
        )
        worker.start()
        shown_step, shown_at = 0, 0.0
        while worker.is_alive():
            worker.join(0.2)
            step = monitor.step
            if progress is not None and step:
                progress((step, monitor.total), desc=f"{method_class.name}: erasing '{concept}'", unit="steps")
            if step != shown_step and time.perf_counter() - shown_at > 1.0:
                history = monitor.history()
                status = _status_line(method_class.name, concept, step, monitor.total, history, started)
                shown_step, shown_at = step, time.perf_counter()
                yield EraseUpdate(status, loss_frame(history), _skip(), _skip())
        worker = None

        if isinstance(monitor.error, RunStopped):
            _warn(f"Stopped after step {monitor.step}; nothing was saved.")
            yield EraseUpdate(
                f"**Stopped** after step {monitor.step}/{monitor.total}; nothing was saved.",
                loss_frame(monitor.history()),
                _skip(),
                _skip(),
            )
            return
        if isinstance(monitor.error, StudioError):
            raise user_error(str(monitor.error))
        if monitor.error is not None:
            raise monitor.error
        result = monitor.result
        with studio_errors():
            erased = erased_model(base, result)
            after = preview_grid(studio, erased, concept)
            from ui.cli import _slug

            stamp = time.strftime("%Y%m%d-%H%M%S")
            path = _unique_dir(studio.output_dir, f"{method_class.name}-{_slug(concept)}-{stamp}")
            path = result.save(path, base_model=base if studio.save_samples else None)
        session.model_type = method_class.model_type
        session.base, session.base_name, session.erased = base, model_label(base), erased
        session.method, session.concept, session.result = method_class.name, concept, result
        session.artifact_dir, session.attack_report = Path(path), None
        yield EraseUpdate(_erase_summary(result, path), loss_frame(result.loss_history), before, after)
    finally:
        if worker is not None and worker.is_alive():  # the page went away mid-run: stop the run, then unlock
            studio.stop_requested.set()
            worker.join()
        studio.lock.release()


def _erase_summary(result: Any, path: Path) -> str:
    m = result.metrics
    history = result.loss_history
    key = next((k for k in history[-1] if "loss" in k), None) if history else None
    loss = f", final {key} {history[-1][key]:.4g}" if key else ""
    return "\n".join(
        [
            f"**Done:** '{result.config.concept}' erased with **{result.method}** ({result.config.max_train_steps} "
            f"steps, {m.get('wall_seconds', 0):.1f} s{loss}, {m.get('trainable_parameters', 0):,} trainable "
            "parameters).",
            "",
            f"Saved as a `{result.artifact_kind}` artifact in `{path}`.",
            "",
            "Next: **Compare** base and erased on more prompts, **Attack** the erased model, **Score** it, or "
            "download the artifact from **Artifacts**.",
        ]
    )


def stop_run(studio: Studio) -> str:
    """Ask the running erasure to stop after its current step."""
    if not studio.lock.locked():
        return "Nothing is running."
    studio.stop_requested.set()
    return "Stopping after the current step …"


def on_method_change(studio: Studio, method: str, current_model: str | None) -> tuple[str, str, str]:
    """(method summary, model box text, notice) for a newly picked method.

    The model box switches to the other model family's default when it still shows the old family's default, so a
    typed path is never overwritten.
    """
    from erasure import get_method_class

    with studio_errors():
        model_type = get_method_class(method).model_type
    other = STABLE_DIFFUSION if model_type == STYLEGAN2 else STYLEGAN2
    model = current_model or ""
    if not model.strip() or model == studio.default_model(other):
        model = studio.default_model(model_type)
    return method_summary(method), model, toy_notice(studio, model_type)


def toy_notice(studio: Studio, model_type: str) -> str:
    """A visible note when the default toy model of ``model_type`` is not built yet ("" when all is well)."""
    default = studio.gan_model if model_type == STYLEGAN2 else studio.model
    part = "gan" if model_type == STYLEGAN2 else "sd"
    if default != "toy" or toy_is_built(part):
        return ""
    stage = " --stages gan" if part == "gan" else ""
    what = "GAN (StyleGAN2)" if part == "gan" else "Stable Diffusion"
    return (
        f"**Note:** the toy world's {what} is not built yet, so 'toy' cannot be loaded. Build it with "
        f"`erasure-studio toy build{stage}`, or type the path of your own model in the model box."
    )


def session_prompts(session: Session) -> tuple[str, str]:
    """(comparison prompts, attack prompt) for the session's concept, to pre-fill the Compare and Attack tabs."""
    if not session.concept or session.model_type == STYLEGAN2:
        return _skip(), _skip()
    prompts = compare_prompts(session.concept)
    return "\n".join(prompts), prompts[0]


# ---------------------------------------------------------------- Compare


class CompareUpdate(NamedTuple):
    """Outputs of :func:`run_compare`: a status line, the side-by-side grid, the judge's verdicts."""

    status: Any
    grid: Any
    table: Any


def _require_erased(session: Session) -> None:
    if session.erased is None:
        raise user_error(NO_ERASED_MODEL)


def run_compare(
    studio: Studio, session: Session, prompts: str | None = None, seeds: Any = "0 1", progress: Any = None
) -> CompareUpdate:
    """Base and erased model side by side on the same prompts and seeds, with the judge's verdict on each image.

    Args:
        prompts (`str`, *optional*): one prompt per line; empty means the concept, its paraphrases and other
            concepts (:func:`compare_prompts`). Ignored for GAN models, which have no prompt.
        seeds (`str`): seeds separated by spaces; each prompt is sampled once per seed, by both models.

    Returns:
        `CompareUpdate`: the grid has one row per prompt (GAN: per seed), base seeds left and erased seeds right;
        the table has one row per prompt with the judge's hit counts on both models.
    """
    import pandas as pd

    _require_erased(session)
    with studio_errors():
        seed_list = parse_seeds(seeds)
        prompt_list = _parse_prompts(prompts, session.concept) if session.model_type != STYLEGAN2 else []
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        return CompareUpdate(_busy_markdown(), _skip(), _skip())
    try:
        with studio_errors():
            judge = studio.judge_for(session.base)
            if progress is not None:
                progress(None, desc="sampling base and erased models")
            if session.model_type == STYLEGAN2:
                return _compare_gan(session, judge, seed_list)
            from pipelines.images import before_after_grid

            before = _sample_sd(studio, session.base, prompt_list, seed_list)
            after = _sample_sd(studio, session.erased, prompt_list, seed_list)
            grid = before_after_grid(before, after, prompt_list, seed_list)
            n = len(seed_list)
            rows = []
            for i, prompt in enumerate(prompt_list):
                role, judged = prompt_role(prompt, session.concept)
                row = {"prompt": prompt, "role": role, "judged for": judged}
                for name, images in (("base", before), ("erased", after)):
                    chunk = images[i * n : (i + 1) * n]
                    if judge.knows(judged):
                        verdicts = judge(chunk, judged)
                        row[f"{name}: shows it"] = f"{sum(v.success for v in verdicts)}/{n}"
                        row[f"{name}: judge sees"] = ", ".join(v.label for v in verdicts)
                    else:
                        row[f"{name}: shows it"] = row[f"{name}: judge sees"] = "–"
                rows.append(row)
            status = (
                f"{len(prompt_list)} prompts x {n} seeds. *concept* rows should stop showing '{session.concept}', "
                "*paraphrase* rows test other words for it, *other* rows should keep their concept."
            )
            return CompareUpdate(status, grid, pd.DataFrame(rows))
    finally:
        studio.lock.release()


def _compare_gan(session: Session, judge: Any, seeds: list[int]) -> CompareUpdate:
    import pandas as pd

    from pipelines.images import image_grid, to_pil

    n = GAN_SAMPLES_PER_SEED
    grid_rows, labels, rows = [], [], []
    for seed in seeds:
        before, after = session.base.sample(n, seed=seed), session.erased.sample(n, seed=seed)
        grid_rows.append(to_pil(before) + to_pil(after))
        labels.append(f"seed {seed}")
        row = {"seed": seed, "judged for": session.concept}
        for name, images in (("base", before), ("erased", after)):
            verdicts = judge(images, session.concept)
            row[f"{name}: shows it"] = f"{sum(v.success for v in verdicts)}/{n}"
        rows.append(row)
    cols = [f"base z{i}" for i in range(n)] + [f"erased z{i}" for i in range(n)]
    grid = image_grid(grid_rows, row_labels=labels, col_labels=cols)
    return CompareUpdate(f"{len(seeds)} seeds x {n} latents.", grid, pd.DataFrame(rows))


# ---------------------------------------------------------------- Attack


class AttackUpdate(NamedTuple):
    """Outputs of :func:`run_attack`: the verdict, the adversarial prompt, the images without and with attack."""

    status: Any
    adversarial_prompt: Any
    original_image: Any
    attacked_image: Any


def run_attack(
    studio: Studio,
    session: Session,
    prompt: str,
    seed: Any = 0,
    guidance: Any = 7.5,
    prefix_tokens: Any = 3,
    iterations_per_timestep: Any = 10,
    num_timesteps: Any = 10,
    schedule: str = "fast",
    progress: Any = None,
) -> AttackUpdate:
    """UnlearnDiffAtk on one prompt against the erased model: can k prefix tokens bring the concept back?

    The target image comes from the base model (prompt, seed, guidance), as in the paper's protocol. The defaults
    are a short schedule for a CPU (10 timesteps x 10 iterations, 5 timesteps per UNet call); the paper's is 50 x 40
    (``schedule="faithful"``, ``num_timesteps=50``, ``iterations_per_timestep=40``).

    Returns:
        `AttackUpdate`: the judge's verdict without and with the attack, the adversarial prompt (empty when the
        prompt already succeeds without attack), and both images.
    """
    _require_erased(session)
    if session.model_type == STYLEGAN2:
        raise user_error(
            "UnlearnDiffAtk attacks text-to-image diffusion models through their prompt; a GAN has no prompt to "
            "attack. Use Compare to check the erased GAN."
        )
    prompt = (prompt or "").strip()
    if not prompt:
        raise user_error(
            "The attack prompt is empty: type a prompt that asks for the erased concept, e.g. 'a red star'."
        )
    with studio_errors():
        from eval.prompts import PromptRow
        from eval.unlearndiffatk import AttackConfig

        config = AttackConfig(
            prefix_tokens=_as_int(prefix_tokens, "k (prefix tokens)"),
            iterations_per_timestep=_as_int(iterations_per_timestep, "iterations per timestep"),
            num_timesteps=_as_int(num_timesteps, "timesteps"),
            schedule=schedule,
            timestep_batch=min(5, _as_int(num_timesteps, "timesteps")),
            num_inference_steps=studio.num_inference_steps,
            seed=_as_int(seed, "seed"),
        )
        row = PromptRow(
            prompt=prompt, seed=config.seed, guidance=_as_float(guidance, "guidance scale"), concept=session.concept
        )
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        return AttackUpdate(_busy_markdown(), _skip(), _skip(), _skip())
    try:
        with studio_errors():
            from dataclasses import asdict

            from eval.unlearndiffatk import AttackReport, UnlearnDiffAtk, target_latents
            from pipelines.images import to_pil

            judge = studio.judge_for(session.base)
            if not judge.knows(session.concept):
                raise ConfigError(
                    f"the {judge.name} judge does not know the concept {session.concept!r}; {judge.concept_hint()}"
                )
            if progress is not None:
                progress(None, desc="rendering the target image with the base model")
            _, latents = target_latents(session.base, [row], num_inference_steps=config.num_inference_steps)
            if progress is not None:
                progress(None, desc=f"attacking: {config.num_timesteps} timesteps x {config.iterations_per_timestep}")
            runner = UnlearnDiffAtk(session.erased, judge, config)
            record, extras = runner.run(row, session.concept, latents[0])
            original_verdict = judge(extras["original_image"], session.concept)[0]
            session.attack_report = AttackReport(
                records=[record], config=asdict(config), judge=judge.describe(), concept=session.concept
            )
            original = _upscale(to_pil(extras["original_image"])[0])
            attacked = _upscale(to_pil(extras["image"])[0])
            return AttackUpdate(
                _attack_summary(record, original_verdict, config), record.adversarial_prompt or "", original, attacked
            )
    finally:
        studio.lock.release()


def _as_int(value: Any, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _as_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None


def _attack_summary(record: Any, original_verdict: Any, config: Any) -> str:
    concept = record.concept
    if record.pre_success:
        headline = (
            f"**The erased model still draws '{concept}' without any attack** (pre-attack success): the erasure "
            "does not hold for this prompt and seed."
        )
    elif record.success:
        headline = f"**Attack succeeded:** the adversarial prompt brings '{concept}' back."
    else:
        headline = f"**Attack failed:** the judge does not see '{concept}' in the attacked image; the erasure held."
    return "\n".join(
        [
            headline,
            "",
            "| | prompt | judge sees | score for the concept | shows the concept |",
            "|---|---|---|---|---|",
            f"| original | {record.prompt} | {original_verdict.label} | {original_verdict.score:.2f} | "
            f"{'yes' if original_verdict.success else 'no'} |",
            f"| attacked | {record.adversarial_prompt or '(no attack needed)'} | {record.label} | "
            f"{record.score:.2f} | {'yes' if record.success else 'no'} |",
            "",
            f"k = {config.prefix_tokens} prefix tokens, {record.attack_steps} optimisation steps, {record.checks} "
            f"check generations, {record.seconds:.1f} s ({config.schedule} schedule).",
        ]
    )


# ---------------------------------------------------------------- Score


class ScoreUpdate(NamedTuple):
    """Outputs of :func:`run_score`: the scorecard as Markdown, as JSON, and its rates chart."""

    markdown: Any
    json: Any
    chart: Any


def run_score(
    studio: Studio,
    session: Session,
    seeds: Any = 1,
    clip: bool = False,
    fid: bool = False,
    progress: Any = None,
) -> ScoreUpdate:
    """The scorecard of the erased model against its base (``eval.scorecard.scorecard``).

    Args:
        seeds (`int`): seeds per prompt.
        clip (`bool`): also the CLIP score (the toy world's CLIP).
        fid (`bool`): also FID/FD (the toy world's feature extractor).

    Returns:
        `ScoreUpdate`; when ``eval.scorecard`` is not installed, the Markdown says so and the rest is empty.
    """
    _require_erased(session)
    try:
        from eval.scorecard import scorecard
    except ImportError as err:
        message = (
            "**The scorecard is not available:** `eval.scorecard` could not be imported "
            f"({err}). Update Erasure Studio to a version that has it."
        )
        _warn("The scorecard is not available in this installation.")
        return ScoreUpdate(message, None, None)
    if session.model_type == STYLEGAN2:
        raise user_error(
            "The scorecard compares diffusion models on prompts; for a GAN, use Compare (same latents, judge rates)."
        )
    with studio_errors():
        seed_count = _as_int(seeds, "seeds")
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        return ScoreUpdate(_busy_markdown(), _skip(), _skip())
    try:
        with studio_errors():

            def say(message: str) -> None:
                if progress is not None:
                    progress(None, desc=message)

            card = scorecard(
                session.erased,
                session.base,
                session.concept,
                studio.judge_for(session.base),
                clip="toy" if clip else None,
                fid_features="toy" if fid else None,
                attack_report=session.attack_report,
                seeds=seed_count,
                num_inference_steps=studio.num_inference_steps,
                progress=say,
            )
            chart = card.plot_rates(studio.scratch_dir / f"rates-{time.time_ns()}.png")
            from PIL import Image

            with Image.open(chart) as image:
                chart_image = image.convert("RGB")
            # The Markdown links the PNGs that Scorecard.save writes beside it; the page shows the chart instead.
            markdown = re.sub(r"^!\[[^\]]*\]\([^)]*\)\s*$", "", card.to_markdown(), flags=re.MULTILINE)
            return ScoreUpdate(markdown, card.to_dict(), chart_image)
    finally:
        studio.lock.release()


# ---------------------------------------------------------------- Artifacts


class LoadUpdate(NamedTuple):
    """Outputs of :func:`load_artifact`: a summary, the artifact's before/after grid and its loss curve."""

    status: Any
    samples: Any
    loss: Any


def current_artifact(session: Session) -> str:
    if session.artifact_dir is None:
        return "No artifact yet: run an erasure, or load an artifact folder below."
    return f"Current artifact: `{session.artifact_dir}` ({session.method}, '{session.concept}')."


def zip_artifact(studio: Studio, session: Session) -> tuple[str, str]:
    """Zip the current artifact folder for download. Returns ``(zip path, status)``."""
    if session.artifact_dir is None:
        raise user_error("There is no artifact to download yet: run an erasure, or load an artifact folder.")
    folder = session.artifact_dir
    if not folder.is_dir():
        raise user_error(f"The artifact folder {folder} is gone (moved or deleted); run the erasure again.")
    target = _unique_dir(studio.scratch_dir, folder.name)
    archive = shutil.make_archive(str(target), "zip", root_dir=folder.parent, base_dir=folder.name)
    size = Path(archive).stat().st_size
    return archive, f"`{Path(archive).name}` ({size / 2**20:.1f} MB): the folder `{folder}` as a zip."


def load_artifact(studio: Studio, session: Session, path: str | None) -> LoadUpdate:
    """Make an earlier artifact folder the current erased model (verified with ``read_manifest``).

    Its base model comes from the manifest (``toy``, a path, or an in-memory model of the same name) and must
    match the fingerprints the artifact records. A folder that cannot be loaded (missing, not an artifact, a file
    changed since it was saved, another base model) leaves the session as it was and says why in the status box.
    """
    text = (path or "").strip()
    if not text:
        return _load_failed("type the path of an artifact folder (the folder that holds erasure.json)")
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        return LoadUpdate(_busy_markdown(), _skip(), _skip())
    try:
        try:
            from pipelines.artifacts import apply_artifact, read_manifest

            folder = Path(text).expanduser()
            manifest = read_manifest(folder)
            model_type = STYLEGAN2 if manifest.get("sampler") == "stylegan2" else STABLE_DIFFUSION
            base_name = manifest.get("base_model", {}).get("name_or_path")
            if not base_name:
                raise ConfigError(f"the artifact {folder} does not name its base model, so it cannot be loaded here")
            base = studio.load_model(base_name, model_type)
            erased = apply_artifact(base, folder)
        except StudioError as err:
            return _load_failed(str(err))
        session.model_type, session.base, session.base_name, session.erased = model_type, base, base_name, erased
        session.method, session.concept = manifest.get("method", ""), manifest.get("concept", "")
        session.result, session.artifact_dir, session.attack_report = None, folder, None
        metrics = manifest.get("metrics", {})
        status = "\n".join(
            [
                f"**Loaded** `{folder}`: '{session.concept}' erased with **{session.method}** from base "
                f"`{base_name}` (format {manifest.get('format_version')}, every file's sha256 checked).",
                "",
                "| artifact kind | steps | wall time | artifact size | created |",
                "|---|---|---|---|---|",
                f"| {manifest.get('artifact_kind')} | {manifest.get('config', {}).get('max_train_steps', '–')} | "
                f"{metrics.get('wall_seconds', 0):.1f} s | {metrics.get('artifact_bytes', 0) / 2**20:.2f} MB | "
                f"{manifest.get('created', '–')} |",
            ]
        )
        return LoadUpdate(status, _open_image(folder / "samples.png"), _open_image(folder / "loss.png"))
    finally:
        studio.lock.release()


def _load_failed(message: str) -> LoadUpdate:
    _warn(f"Could not load the artifact: {message}")
    return LoadUpdate(f"**Could not load the artifact:** {message}", None, None)


def _open_image(path: Path):
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


# ---------------------------------------------------------------- the page


def build_demo(
    model: Any = "toy",
    *,
    gan_model: Any = "toy",
    judge: Any = "toy",
    output_dir: str | os.PathLike = "runs/studio",
    device: str | None = None,
    num_inference_steps: int | None = None,
    seeds: Sequence[int] = (0, 1),
    save_samples: bool = True,
    method: str | None = None,
    max_queue_size: int = 16,
):
    """Build the studio page.

    Args:
        model (`str` or `StableDiffusionPipeline`, defaults to `"toy"`): base model of the diffusion methods:
            ``"toy"``, a local diffusers folder, or a pipeline object (tests pass ``pipelines.tiny.tiny_sd(0)``).
        gan_model (`str` or `GANBundle`, defaults to `"toy"`): base model of the GAN methods.
        judge (`str` or `Judge`, defaults to `"toy"`): the judge of concepts for the checks, Compare, Attack, Score.
        output_dir (`str`, defaults to `"runs/studio"`): where each erasure's artifact folder is saved.
        device (`str`, *optional*): device of the models loaded by name.
        num_inference_steps (`int`, *optional*): sampler steps of previews, comparisons and attack checks.
        seeds (`Sequence[int]`, defaults to `(0, 1)`): seeds of the before/after previews.
        save_samples (`bool`, defaults to `True`): write each artifact's before/after sample grid.
        method (`str`, *optional*): the method selected at start (default ``esd``).
        max_queue_size (`int`, defaults to 16): events waiting in Gradio's queue before new ones are refused.

    Returns:
        `gradio.Blocks` with its queue set up (one run at a time); ``demo.studio`` is the :class:`Studio` behind it.
    """
    gr = _gradio()
    from erasure import get_method_class, list_methods

    studio = Studio(
        model=model,
        gan_model=gan_model,
        judge=judge,
        output_dir=Path(output_dir),
        device=device,
        num_inference_steps=num_inference_steps,
        seeds=tuple(seeds),
        save_samples=save_samples,
    )
    methods = list_methods()
    selected = method or (DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0])
    selected_type = get_method_class(selected).model_type
    method_choices = [
        (f"{m} ({'GAN' if get_method_class(m).model_type == STYLEGAN2 else 'diffusion'})", m) for m in methods
    ]
    run_events = {"concurrency_id": "studio-run", "concurrency_limit": 2}  # 1 running + 1 told to wait (the lock)

    with gr.Blocks(title="Erasure Studio", analytics_enabled=False) as demo:
        session = gr.State(new_session)  # a fresh Session per browser tab
        gr.Markdown(
            "# Erasure Studio\nErase a concept from a generative model, then check that it is gone: side by side, "
            "under attack, and on the scorecard. Everything runs locally."
        )

        with gr.Tab("Erase", id="erase"):
            with gr.Row():
                with gr.Column(scale=1):
                    model_box = gr.Textbox(
                        value=studio.default_model(selected_type),
                        label="Base model",
                        info="'toy' (the bundled toy world), a local folder, or the name of an in-memory model",
                        elem_id="model",
                    )
                    method_dd = gr.Dropdown(method_choices, value=selected, label="Method", elem_id="method")
                    method_md = gr.Markdown(method_summary(selected), elem_id="method-summary")
                    notice_md = gr.Markdown(toy_notice(studio, selected_type), elem_id="notice")
                    concept_box = gr.Textbox(
                        label="Concept to erase",
                        placeholder="e.g. star",
                        info="What the prompts call it.",
                        elem_id="concept",
                    )
                    layout: list[tuple[str, SettingSpec]] = []
                    controls: list[Any] = []
                    groups: dict[str, Any] = {}
                    for name in methods:
                        with gr.Group(visible=name == selected) as group:
                            specs = setting_specs(name)
                            for spec in [s for s in specs if s.key]:
                                controls.append(_control(gr, name, spec))
                                layout.append((name, spec))
                            with gr.Accordion("Advanced settings", open=False):
                                for spec in [s for s in specs if not s.key]:
                                    controls.append(_control(gr, name, spec))
                                    layout.append((name, spec))
                        groups[name] = group
                    settings_json = gr.JSON(visible=False)
                    with gr.Row():
                        erase_btn = gr.Button("Erase", variant="primary", elem_id="erase-button")
                        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop-button")
                with gr.Column(scale=2):
                    status_md = gr.Markdown("Pick a method and a concept, then press Erase.", elem_id="erase-status")
                    loss_plot = gr.LinePlot(
                        None,
                        x="step",
                        y="value",
                        color="series",
                        title="Training loss",
                        x_title="step",
                        y_title="loss",
                        height=240,
                        elem_id="loss-plot",
                    )
                    with gr.Row():
                        before_img = gr.Image(label="Before (base model)", type="pil", elem_id="before-image")
                        after_img = gr.Image(label="After (erased model)", type="pil", elem_id="after-image")

        with gr.Tab("Compare", id="compare"):
            gr.Markdown(
                "The same prompts and seeds through the base and the erased model. Leave the prompts empty for the "
                "concept, its paraphrases and other concepts."
            )
            with gr.Row():
                compare_prompts_box = gr.Textbox(label="Prompts (one per line)", lines=6, elem_id="compare-prompts")
                with gr.Column():
                    compare_seeds = gr.Textbox(value=" ".join(map(str, studio.seeds)), label="Seeds")
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
            compare_status = gr.Markdown()
            compare_grid = gr.Image(label="Base (left) vs erased (right)", type="pil", elem_id="compare-grid")
            compare_table = gr.Dataframe(label="The judge's verdicts", interactive=False, wrap=True)

        with gr.Tab("Attack", id="attack"):
            gr.Markdown(
                "**UnlearnDiffAtk** (Zhang et al., ECCV 2024) searches k prefix tokens that make the erased model "
                "draw the concept again. The defaults are a short schedule for a CPU; the paper uses 50 timesteps "
                "x 40 iterations (faithful schedule)."
            )
            with gr.Row():
                attack_prompt = gr.Textbox(label="Prompt", placeholder="e.g. a red star", elem_id="attack-prompt")
                attack_seed = gr.Number(value=0, precision=0, label="Seed")
                attack_guidance = gr.Number(value=7.5, label="Guidance scale")
            with gr.Row():
                attack_k = gr.Slider(1, 8, value=3, step=1, label="k (prefix tokens)")
                attack_iterations = gr.Slider(1, 40, value=10, step=1, label="Iterations per timestep")
                attack_timesteps = gr.Slider(1, 50, value=10, step=1, label="Timesteps")
                attack_schedule = gr.Radio(["fast", "faithful"], value="fast", label="Schedule")
            attack_btn = gr.Button("Attack", variant="primary", elem_id="attack-button")
            attack_status = gr.Markdown(elem_id="attack-status")
            attack_adv = gr.Textbox(label="Adversarial prompt", interactive=False)
            with gr.Row():
                attack_original = gr.Image(label="Original prompt", type="pil")
                attack_image = gr.Image(label="Adversarial prompt", type="pil")

        with gr.Tab("Score", id="score"):
            gr.Markdown(
                "The scorecard: forget, paraphrase and retain rates, UA / IRA / CRA, and (optionally) CLIP and FID, "
                "with the leaderboards' column names. The last attack's pre-ASR and ASR are included."
            )
            with gr.Row():
                score_seeds = gr.Slider(1, 4, value=1, step=1, label="Seeds per prompt")
                on_toy = studio.model == "toy"
                score_clip = gr.Checkbox(value=on_toy and toy_is_built("clip"), label="CLIP score (toy CLIP)")
                score_fid = gr.Checkbox(value=on_toy and toy_is_built("judge"), label="FID / FD (toy features)")
                score_btn = gr.Button("Score", variant="primary", elem_id="score-button")
            score_chart = gr.Image(label="Rates", type="pil")
            score_md = gr.Markdown(elem_id="score-markdown")
            with gr.Accordion("JSON", open=False):
                score_json = gr.JSON()

        with gr.Tab("Artifacts", id="artifacts"):
            artifact_md = gr.Markdown("No artifact yet: run an erasure, or load an artifact folder below.")
            with gr.Row():
                zip_btn = gr.Button("Download the current artifact as a zip", elem_id="zip-button")
                zip_file = gr.File(label="Artifact zip", interactive=False)
            zip_status = gr.Markdown()
            with gr.Row():
                load_box = gr.Textbox(label="Artifact folder", placeholder="runs/studio/esd-star-...", scale=3)
                load_btn = gr.Button("Load", scale=1, elem_id="load-button")
            load_status = gr.Markdown(elem_id="load-status")
            with gr.Row():
                load_samples = gr.Image(label="Before / after samples", type="pil")
                load_loss = gr.Image(label="Loss", type="pil")

        # -------------------------------------------------- events (thin closures around the module-level handlers)

        def _on_method(method_name, current_model):
            summary, model_text, notice = on_method_change(studio, method_name, current_model)
            return [summary, model_text, notice] + [gr.update(visible=m == method_name) for m in methods]

        method_dd.change(
            _on_method,
            [method_dd, model_box],
            [method_md, model_box, notice_md, *groups.values()],
            api_visibility="private",
        )

        def _collect(method_name, *values):
            return settings_from_controls(layout, method_name, values)

        def _erase(session_state, model_text, method_name, concept, settings, progress=gr.Progress(track_tqdm=True)):
            yield from run_erase(studio, session_state, model_text, method_name, concept, settings, progress)

        def _prefill(session_state):
            return [*session_prompts(session_state), current_artifact(session_state)]

        erase_btn.click(
            _collect, [method_dd, *controls], settings_json, trigger_mode="multiple", api_visibility="private"
        ).success(
            _erase,
            [session, model_box, method_dd, concept_box, settings_json],
            [status_md, loss_plot, before_img, after_img],
            api_name="erase",
            show_progress_on=loss_plot,  # the status line and the images stay readable during the run
            trigger_mode="multiple",  # a second click reaches the handler, which says a run is going
            **run_events,
        ).success(_prefill, session, [compare_prompts_box, attack_prompt, artifact_md], api_visibility="private")
        stop_btn.click(lambda: stop_run(studio), None, status_md, api_visibility="private", queue=False)

        def _compare(session_state, prompts, seeds_text, progress=gr.Progress()):
            return run_compare(studio, session_state, prompts, seeds_text, progress)

        compare_btn.click(
            _compare,
            [session, compare_prompts_box, compare_seeds],
            [compare_status, compare_grid, compare_table],
            api_name="compare",
            **run_events,
        )

        def _attack(session_state, prompt, seed, guidance, k, iterations, timesteps, schedule, progress=gr.Progress()):
            return run_attack(
                studio, session_state, prompt, seed, guidance, k, iterations, timesteps, schedule, progress
            )

        attack_btn.click(
            _attack,
            [
                session,
                attack_prompt,
                attack_seed,
                attack_guidance,
                attack_k,
                attack_iterations,
                attack_timesteps,
                attack_schedule,
            ],
            [attack_status, attack_adv, attack_original, attack_image],
            api_name="attack",
            **run_events,
        )

        def _score(session_state, seeds_count, use_clip, use_fid, progress=gr.Progress()):
            return run_score(studio, session_state, seeds_count, use_clip, use_fid, progress)

        score_btn.click(
            _score,
            [session, score_seeds, score_clip, score_fid],
            [score_md, score_json, score_chart],
            api_name="score",
            **run_events,
        )

        zip_btn.click(lambda s: zip_artifact(studio, s), session, [zip_file, zip_status], api_name="zip_artifact")

        def _load(session_state, path):
            return load_artifact(studio, session_state, path)

        load_btn.click(
            _load, [session, load_box], [load_status, load_samples, load_loss], api_name="load_artifact", **run_events
        ).success(_prefill, session, [compare_prompts_box, attack_prompt, artifact_md], api_visibility="private")

    demo.queue(default_concurrency_limit=1, max_size=max_queue_size)
    demo.studio = studio
    return demo


def _control(gr, method: str, spec: SettingSpec):
    """A Gradio control for one config field."""
    common = {"label": spec.name, "info": spec.help or None, "elem_id": f"setting-{method}-{spec.name}"}
    value = _format_setting(spec)
    if spec.kind == "choice":
        return gr.Dropdown([str(c) for c in spec.choices], value=value, **common)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind == "int":
        return gr.Number(value=value, precision=0, **common)
    if spec.kind == "float":
        return gr.Number(value=value, **common)
    if spec.kind in ("int_list", "float_list"):
        common["info"] = f"{spec.help} (numbers separated by spaces)".strip()
    return gr.Textbox(value=value, **common)


# ---------------------------------------------------------------- erasure-studio demo


def cmd_demo(argv: Sequence[str]) -> int:
    """``erasure-studio demo``: open the studio in the browser (binds 127.0.0.1 unless ``--host`` says otherwise)."""
    from ui.cli import PROG, _Parser

    parser = _Parser(
        prog=f"{PROG} demo",
        description="Open the Erasure Studio in the browser: erase, compare, attack, score and keep artifacts.",
    )
    parser.add_argument("--model", default="toy", help="Base diffusion model: 'toy' or a local diffusers folder.")
    parser.add_argument(
        "--gan_model", default="toy", help="Base GAN: 'toy', a StyleGAN2 bundle folder or a rosinality checkpoint."
    )
    parser.add_argument("--judge", default="toy", help="Judge of concepts (toy, nudenet, imagenet, clip:..., ...).")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to bind (default 127.0.0.1, this machine only; 0.0.0.0 opens the studio to the network).",
    )
    parser.add_argument("--port", type=int, default=None, help="Port (default: 7860, or the next free one).")
    parser.add_argument("--output_dir", default="runs/studio", help="Where erasures are saved as artifact folders.")
    parser.add_argument("--device", default=None, help="Device (default: cuda if available, else cpu).")
    parser.add_argument(
        "--num_inference_steps", type=int, default=None, help="Sampler steps of previews and comparisons."
    )
    args = parser.parse_args(list(argv))
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number; give 1-65535")
    for flag, value in (("--model", args.model), ("--gan_model", args.gan_model)):
        if value != "toy" and not Path(value).expanduser().exists():
            raise ModelNotFoundError(f"{flag} {value}: no such folder or file; give 'toy' or a local path")
    _gradio()
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    demo = build_demo(
        model=args.model,
        gan_model=args.gan_model,
        judge=args.judge,
        output_dir=args.output_dir,
        device=device,
        num_inference_steps=args.num_inference_steps,
    )
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=False, inbrowser=False)
    return 0
