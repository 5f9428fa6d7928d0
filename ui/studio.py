"""The studio's state and event handlers: what happens when a button of the page (``ui/app.py``) is pressed.

Every handler is a plain module-level function (:func:`run_erase`, :func:`run_compare`, :func:`run_attack`,
:func:`run_score`, :func:`zip_artifact`, :func:`load_artifact`, ...). Each takes the :class:`Studio` (what every
browser tab shares: the models, the judge, the one-run-at-a-time lock) and a :class:`Session` (one tab's current
erased model), so tests call them without a server. Bad input raises ``gradio.Error`` with the
:class:`~pipelines.errors.StudioError` message (shown in the page, never a traceback). On the page, Gradio's queue
runs one heavy event at a time and keeps the others waiting in line (``ui.app``); the lock is the second guard, for
calls that bypass the queue, and turns them away with a visible warning. With ``Studio(root=...)`` every path typed
into the page must lie inside one folder. Gradio is imported lazily, so importing this module stays cheap.

What is not about the page lives below ``ui``: the prompts that test an erasure and their roles in
``pipelines.toy.world``, loading models in ``pipelines.open_model``, the erased model in memory in
``EraseResult.apply``, the settings controls in ``ui.widgets``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

from erasure.base import PAPER_PRESET, TOY_PRESET  # noqa: E402
from pipelines.errors import ConfigError, ModelNotFoundError, StudioError  # noqa: E402

from .commands.common import erase_data_for  # noqa: E402
from .widgets import SettingSpec, convert_setting, method_summary  # noqa: E402

STABLE_DIFFUSION = "stable_diffusion"
STYLEGAN2 = "stylegan2"
DEFAULT_METHOD = "esd"
BUSY_MESSAGE = (
    "Another run is going (an erasure, comparison, attack or scorecard). Wait for it to finish, or press "
    "Stop on the Erase tab."
)
NO_ERASED_MODEL = "There is no erased model yet: run an erasure on the Erase tab, or load an artifact folder."
MAX_COMPARE_PROMPTS = 24
MAX_SEEDS = 8
GAN_SAMPLES_PER_SEED = 4
PREVIEW_TILE = 96


def import_gradio():
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
        preset (`str`, *optional*): the preset the Erase tab's settings start from (and that fills the settings an
            API call leaves out). Unset, it fits the model (:meth:`preset_for`): ``"toy"`` for the toy world and for
            models handed over in memory (the tests' tiny models), ``"paper"`` for a model loaded from a path.
        root (`Path`, *optional*): confine every path typed into the page (a model, an artifact folder, the base
            model an artifact names) to this folder, symlinks followed (:meth:`confine`); ``output_dir`` must lie
            inside it. The models the studio was started with are trusted wherever they are. Unset: no confinement
            (the Python API's default; ``erasure-studio demo`` always sets one).
    """

    model: Any = "toy"
    gan_model: Any = "toy"
    judge: Any = "toy"
    output_dir: Path = Path("runs/studio")
    device: str | None = None
    num_inference_steps: int | None = None
    seeds: tuple[int, ...] = (0, 1)
    save_samples: bool = True
    preset: str | None = None
    root: Path | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stop_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    scratch_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="erasure-studio-")), repr=False)
    _models: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    _judge: Any = field(default=None, repr=False)
    _in_memory: set[str] = field(default_factory=set, repr=False)
    _trusted: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.output_dir = Path(self.output_dir)
        if self.root is not None:
            self.root = Path(self.root).expanduser().resolve()
            self.confine(str(self.output_dir), what="output folder")
        # The models named when the studio started are the operator's choice, not a visitor's: trusted anywhere.
        self._trusted = {str(m) for m in (self.model, self.gan_model) if isinstance(m, (str, os.PathLike))}
        weakref.finalize(self, shutil.rmtree, str(self.scratch_dir), True)
        for obj, model_type in ((self.model, STABLE_DIFFUSION), (self.gan_model, STYLEGAN2)):
            if not isinstance(obj, (str, os.PathLike)):
                self._models[(model_type, model_label(obj))] = obj
                self._in_memory.add(model_label(obj))

    def default_model(self, model_type: str) -> str:
        """The text the model box shows by default for a method of ``model_type``."""
        return model_label(self.gan_model if model_type == STYLEGAN2 else self.model)

    def preset_for(self, method: str, name_or_path: str | None) -> str:
        """The settings preset of ``method`` that fits a base model: ``"toy"`` on the toy world, else ``"paper"``.

        A model named in the model box gets what ``erasure.erase`` and the CLI give it (``default_preset``). A model
        handed to the studio in memory (a test's tiny model) starts from ``"toy"``, as the studio always did; set
        ``Studio(preset=...)`` to choose for every model.
        """
        from erasure import get_config_class, get_method_class
        from erasure.base import default_preset

        if self.preset:
            return self.preset
        name = (name_or_path or "").strip() or self.default_model(get_method_class(method).model_type)
        if name in self._in_memory and TOY_PRESET in get_config_class(method).presets:
            return TOY_PRESET
        return default_preset(method, name) or PAPER_PRESET

    def confine(self, text: str, *, what: str = "path") -> Path:
        """The path typed into the page, refused unless it resolves (symlinks followed) inside :attr:`root`.

        Raises:
            ConfigError: the path lies outside the studio's root.
        """
        path = Path(text).expanduser()
        if self.root is None:
            return path
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise ConfigError(
                f"the {what} {text} is outside the studio's root folder {self.root}; move it there, or start the "
                "studio with --root set to a folder that holds it"
            )
        return path

    def load_model(self, name_or_path: str, model_type: str):
        """The base model named in the model box: an in-memory model's name, ``"toy"``, or a local path (cached).

        Raises:
            ModelNotFoundError: the path does not exist, or the toy weights are not built yet.
            ConfigError: the path holds a model of the other family (a GAN for a diffusion method, say).
        """
        from pipelines import open_model

        name = (name_or_path or "").strip() or self.default_model(model_type)
        key = (model_type, name)
        if key in self._models:
            return self._models[key]
        if name != "toy" and name not in self._trusted and Path(name).expanduser().exists():
            self.confine(name, what="model path")
        if name != "toy":
            # open_model's own error for a name that is nothing ("not 'toy', a folder, a file or a hub id") does not
            # say that a typed path is wrong, so a path gets a sentence of its own.
            path = Path(name).expanduser()
            if not path.exists() and (os.sep in name or name.startswith((".", "~")) or model_type == STYLEGAN2):
                raise ModelNotFoundError(
                    f"the model path {name} does not exist; give 'toy' or a local "
                    + ("StyleGAN2 checkpoint or bundle folder" if model_type == STYLEGAN2 else "diffusers folder")
                )
        model = open_model(name, model_type=model_type, device=self.device)
        if is_gan(model) != (model_type == STYLEGAN2):  # an artifact folder knows its own family
            family = "a GAN (StyleGAN2)" if is_gan(model) else "a diffusion"
            raise ConfigError(f"{name} is {family} model; pick a method of that family, or another model")
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
    return import_gradio().Error(message, title="Erasure Studio", print_exception=False)


@contextmanager
def studio_errors() -> Iterator[None]:
    """Turn a :class:`StudioError` (bad input, missing weights, a broken artifact) into a message in the page."""
    try:
        yield
    except StudioError as err:
        raise user_error(str(err)) from None


def _warn(message: str) -> None:
    import_gradio().Warning(message, title="Erasure Studio")


def _busy_markdown() -> str:
    return f"**Busy.** {BUSY_MESSAGE}"


def _skip():
    return import_gradio().skip()


# ---------------------------------------------------------------- settings, prompts and seeds from the page


def settings_from_controls(layout: Sequence[tuple[str, SettingSpec]], method: str, values: Sequence[Any]) -> dict:
    """The selected method's settings from the values of every method's controls (in ``layout`` order)."""
    with studio_errors():
        return {spec.name: convert_setting(spec, v) for (m, spec), v in zip(layout, values) if m == method}


def preset_settings(layout: Sequence[tuple[str, SettingSpec]], preset: str | None) -> list[Any]:
    """The value of every control (in ``layout`` order) when its method's settings start from ``preset``."""
    from .widgets import format_setting, setting_specs

    starts = {
        method: {s.name: s for s in setting_specs(method, preset)} for method in dict.fromkeys(m for m, _ in layout)
    }
    return [format_setting(starts[method][spec.name]) for method, spec in layout]


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


def _parse_prompts(text: str | None, concept: str) -> list[str]:
    prompts = [line.strip() for line in (text or "").splitlines() if line.strip()]
    from pipelines.toy.world import compare_prompts

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
    from pipelines.toy.world import preview_prompts

    prompts = preview_prompts(concept)
    images = to_pil(_sample_sd(studio, model, prompts, seeds))
    n = len(seeds)
    rows = [images[i * n : (i + 1) * n] for i in range(len(prompts))]
    return image_grid(rows, row_labels=prompts, col_labels=[f"seed {s}" for s in seeds], min_tile=PREVIEW_TILE)


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

    def run(self, method: Any, model: Any, data: Any = None) -> None:
        try:
            self.result = method.erase(model, data=data, callback=self.callback)
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
        settings (`dict` or JSON `str`, *optional*): config fields; the rest come from the preset that fits the
            model (:meth:`Studio.preset_for`: ``"toy"`` on the toy world, the paper's defaults on a real model).
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
        preset = studio.preset_for(method_class.name, model)
        # A method without a preset of that name starts from its field defaults, which are the paper's.
        preset = preset if preset in method_class.config_class.preset_names() else None
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
            target=monitor.run,
            args=(method_class(config), base, erase_data_for(config)),
            name="erasure-studio-run",
            daemon=True,
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
            erased = result.apply(base)
            after = preview_grid(studio, erased, concept)
            from pipelines.data import slugify

            name = f"{method_class.name}-{slugify(concept, fallback='concept')}-{time.strftime('%Y%m%d-%H%M%S')}"
            path = _unique_dir(studio.output_dir, name)
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


def fitting_preset(studio: Studio, method: str, model: str | None, shown: str | None) -> Any:
    """The Preset box's new value after the model box changed: the preset that fits the model (toy world: ``"toy"``,
    a real model: ``"paper"``), or ``gr.skip()`` when it is the one shown, so that edited settings stay."""
    with studio_errors():
        preset = studio.preset_for(method, model)
    return _skip() if preset == shown else preset


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
    from pipelines.toy.world import compare_prompts

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
            concepts (``pipelines.toy.world.compare_prompts``). Ignored for GAN models, which have no prompt.
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
            from pipelines.toy.world import prompt_role

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
    iterations_per_timestep: Any = 40,
    num_timesteps: Any = 50,
    schedule: str = "faithful",
    progress: Any = None,
) -> AttackUpdate:
    """UnlearnDiffAtk on one prompt against the erased model: can k prefix tokens bring the concept back?

    The target image comes from the base model (prompt, seed, guidance), as in the paper's protocol. The defaults
    are the paper's schedule (``schedule="faithful"``, 50 timesteps x 40 iterations, a check after each timestep;
    a few minutes per robust prompt on the toy world on a CPU); ``"fast"`` screens quicker and can undercount.

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
            from pipelines.images import to_pil, upscale

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
            original = upscale(to_pil(extras["original_image"])[0], 128)
            attacked = upscale(to_pil(extras["image"])[0], 128)
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
    with studio_errors():
        seed_count = _as_int(seeds, "seeds")
    if not studio.lock.acquire(blocking=False):
        _warn(BUSY_MESSAGE)
        return ScoreUpdate(_busy_markdown(), _skip(), _skip())
    try:
        with studio_errors():

            def report(step: int, total: int, logs: dict[str, Any]) -> None:
                if progress is not None:
                    progress((step, total), desc=f"scorecard: {logs.get('stage', '')}", unit="stages")

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
                callback=report,
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

            folder = studio.confine(text, what="artifact folder")
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


EXPORT_FORMATS = ("diffusers", "single-file", "lora")


def export_artifact(
    studio: Studio, session: Session, format: str, rank: Any = 4, dtype: str = "fp32"
) -> tuple[str, str]:
    """Export the current artifact (``pipelines.export``) and offer it for download. Returns ``(file, status)``.

    A diffusers folder or a LoRA folder is zipped; a single-file checkpoint is offered as it is. The export's model
    card (in the zip, or beside the checkpoint) names the source artifact and its scorecard numbers.
    """
    if session.artifact_dir is None:
        raise user_error("There is no artifact to export yet: run an erasure, or load an artifact folder.")
    if format not in EXPORT_FORMATS:
        raise user_error(f"Choose an export format: {', '.join(EXPORT_FORMATS)}.")
    folder = session.artifact_dir
    if not folder.is_dir():
        raise user_error(f"The artifact folder {folder} is gone (moved or deleted); run the erasure again.")
    if not studio.lock.acquire(blocking=False):
        raise user_error(BUSY_MESSAGE)
    try:
        with studio_errors():
            from pipelines.export import export

            target = _unique_dir(studio.scratch_dir, f"{folder.name}-{format}")
            output = target.with_suffix(".safetensors") if format == "single-file" else target
            report = export(folder, output, format=format, base=session.base, rank=_as_int(rank, "rank"), dtype=dtype)
    finally:
        studio.lock.release()
    if format == "single-file":
        download = str(output)
        note = (
            "Load it with `StableDiffusionPipeline.from_single_file(file)` (add `config=` the base model's "
            "diffusers folder for a model of non-standard sizes, such as the toy one), or in ComfyUI / A1111."
        )
    else:
        download = shutil.make_archive(str(target), "zip", root_dir=target.parent, base_dir=target.name)
        note = (
            "Unzip, then `StableDiffusionPipeline.from_pretrained(folder)`."
            if format == "diffusers"
            else "Unzip, then `pipe.load_lora_weights(folder)`; the LoRA scale sets the erasure's strength."
        )
    lines = [f"**Exported** `{folder.name}` as **{format}** ({report.bytes / 2**20:.2f} MB of weights). {note}"]
    if report.format == "lora":
        lines += [
            "",
            f"Rank {report.rank} over {len(report.layers)} changed {report.component} layers; overall relative "
            f"approximation error **{report.overall_error:.4f}** (per layer in the model card).",
        ]
    return download, "\n".join(lines)


def _load_failed(message: str) -> LoadUpdate:
    _warn(f"Could not load the artifact: {message}")
    return LoadUpdate(f"**Could not load the artifact:** {message}", None, None)


def _open_image(path: Path):
    if not path.is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")
