"""The shared erasure API: configs, the method registry, results, and ``erase()``.

A method is a config dataclass (a subclass of :class:`EraseConfig`) plus a class (a subclass of :class:`EraseMethod`)
registered under a lower-case name with :func:`register`. ``erase(name, model, **config)`` builds the config, runs the
method, and returns an :class:`EraseResult` holding only the components that changed. ``EraseResult.save(path)``
writes the artifact folder that ``pipelines.apply_artifact`` loads back.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import resource
import time
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from pipelines.checks import check_field_types
from pipelines.errors import ConfigError, MissingDependencyError

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int, dict[str, float]], None]
"""``callback(step, total, logs)``, called after every optimisation step (``step`` counts from 1)."""

ModelType = Literal["stable_diffusion", "stylegan2"]

PAPER_PRESET = "paper"
"""The preset every method has: its config's defaults, which reproduce the paper's setting on real models."""
TOY_PRESET = "toy"
"""The preset a method tuned for the toy world; :func:`erase` uses it by default on a toy model."""


@dataclass
class EraseConfig:
    """Settings shared by every erasure method.

    Args:
        concept (`str`):
            The concept to erase, as the model's prompts name it ("nudity", "Van Gogh", "star").
        seed (`int`, defaults to 0):
            Seed of every random draw in the run (noise, timesteps, prompts).
        max_train_steps (`int`):
            Number of optimisation steps.
        learning_rate (`float`):
            Optimiser learning rate.
        mixed_precision (`str`, defaults to `"no"`):
            `"fp16"` or `"bf16"` runs the frozen networks in half precision on a GPU; trained weights stay fp32.
        gradient_checkpointing (`bool`, defaults to `False`):
            Recompute activations in the backward pass of the trained network to save memory.
        report_to (`str`, defaults to `"none"`):
            Experiment tracker for accelerate (`"tensorboard"`, `"wandb"`); nothing is imported unless asked for.
    """

    method: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    concept: str = field(default="", metadata={"help": "The concept to erase, as prompts name it (e.g. 'star')."})
    seed: int = field(default=0, metadata={"help": "Seed of every random draw in the run."})
    max_train_steps: int = field(default=1000, metadata={"help": "Number of optimisation steps."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Optimiser learning rate."})
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no", metadata={"help": "Half precision for the frozen networks on a GPU; trained weights stay fp32."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass to save memory."}
    )
    report_to: Literal["none", "tensorboard", "wandb"] = field(
        default="none", metadata={"help": "Experiment tracker (through accelerate); 'none' imports nothing."}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` (a ``ValueError``) naming the bad field and the fix."""
        if isinstance(self.concept, str) and not self.concept.strip():
            raise ConfigError("concept is empty: name the concept to erase, e.g. concept='star' (--concept star)")
        check_field_types(self, owner=self.method or type(self).__name__)
        if not isinstance(self.concept, str) or not self.concept.strip():
            raise ConfigError("concept is empty: name the concept to erase, e.g. concept='star' (--concept star)")
        self.concept = self.concept.strip()
        _check_positive(self, "max_train_steps")
        _check_positive(self, "learning_rate")
        for f in dataclasses.fields(self):
            allowed = _literal_choices(type(self), f.name)
            if allowed and getattr(self, f.name) not in allowed:
                raise ConfigError(
                    f"{f.name}={getattr(self, f.name)!r} is not allowed; choose one of {', '.join(map(str, allowed))}"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with the ``method`` key that :func:`config_from_dict` dispatches on."""
        return {"method": self.method, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EraseConfig:
        values = dict(values)
        method = values.pop("method", cls.method)
        if method != cls.method:
            raise ConfigError(f"this config is for method {method!r}, not {cls.method!r}")
        return build_config(cls, values)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text, for the CLI and the studio."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def preset_names(cls) -> list[str]:
        """The presets this config takes: ``"paper"`` (every method: the dataclass defaults, the paper's setting on
        real models) and the method's own, e.g. ``"toy"``."""
        return sorted({PAPER_PRESET, *cls.presets})

    @classmethod
    def preset_values(cls, preset: str) -> dict[str, Any]:
        """The field values of a named preset (``"paper"``: none, the defaults are the paper's)."""
        if preset in cls.presets:
            return dict(cls.presets[preset])
        if preset == PAPER_PRESET:
            return {}
        raise ConfigError(f"{cls.method} has no preset {preset!r}; available: {', '.join(cls.preset_names())}")


def _check_positive(config: EraseConfig, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


def _literal_choices(cls: type, name: str) -> tuple[Any, ...] | None:
    hints = typing.get_type_hints(cls)
    hint = hints.get(name)
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None


def build_config(cls: type[EraseConfig], values: dict[str, Any]) -> EraseConfig:
    """Instantiate ``cls`` from ``values``; an unknown key is a :class:`ConfigError` naming the closest field."""
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid options: {', '.join(sorted(names))}"
            raise ConfigError(f"{cls.method} has no option {key!r}{hint}")
    return cls(**values)


@dataclass
class EraseData:
    """Optional in-memory data for a method: prompts and images to forget and to retain, and helpers it uses.

    Methods that generate their own data from the base model (most do) use these when given instead. ``judge`` is a
    ``pipelines.judge.Judge`` object for methods that sort samples while they train (Adapt-then-Unlearn); it is an
    object rather than a name because judges are loaded in ``eval``, a layer above the methods. ``clip`` (a
    ``pipelines.clip.ClipBackbone``) replaces the backbone a config names; ``identity_network`` (images in [0, 1] to
    embeddings, e.g. a face-recognition network) turns on Text-to-Unlearn's identity term.
    """

    forget_prompts: list[str] | None = None
    retain_prompts: list[str] | None = None
    forget_images: torch.Tensor | None = None
    retain_images: torch.Tensor | None = None
    judge: Any = None
    clip: Any = None
    identity_network: Any = None


ArtifactKind = Literal["unet_partial", "text_encoder", "unet", "generator", "gan_generator"]
SamplerKind = Literal["multistep", "one_step", "stylegan2"]


@dataclass
class EraseResult:
    """What an erasure produced: the changed components only, plus everything needed to save and audit them.

    Args:
        method (`str`): registry name of the method.
        config (`EraseConfig`): the config the run used.
        components (`dict[str, torch.nn.Module]`): the changed components, e.g. ``{"unet": unet}``.
        artifact_kind (`str`): how the artifact stores them (``unet_partial``, ``text_encoder``, ``unet``,
            ``generator``, ``gan_generator``).
        sampler (`str`): how the result samples (``multistep``, ``one_step``, ``stylegan2``).
        trained_keys (`dict[str, list[str]]`): per component, the state-dict keys that were trained.
        base (`dict`): identity of the base model (name or path, revision, per-component fingerprints).
        loss_history (`list[dict]`): the logs passed to the callback, one entry per step.
        metrics (`dict`): wall seconds, peak memory, trainable parameters, and whatever the method measures.
        extra_tensors (`dict[str, dict[str, torch.Tensor]]`): further tensors saved as ``<name>.safetensors``.
    """

    method: str
    config: EraseConfig
    components: dict[str, Any]
    artifact_kind: ArtifactKind
    sampler: SamplerKind
    trained_keys: dict[str, list[str]]
    base: dict[str, Any]
    loss_history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra_tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def save(
        self,
        path: str | os.PathLike,
        *,
        base_model: Any = None,
        overwrite: bool = False,
        sample_prompts: list[str] | None = None,
        evaluation: dict[str, Any] | None = None,
        num_validation_images: int | None = None,
        validation_inference_steps: int | None = None,
        callback: StepCallback | None = None,
    ) -> Path:
        """Write the artifact folder (see ``pipelines.artifacts.save_artifact``) and return its path.

        Pass the base model (the pipeline or GAN bundle the run started from) to also write a before/after sample
        grid, sized to the model unless ``num_validation_images`` (0 skips it) and ``validation_inference_steps``
        say otherwise; ``callback(step, total, logs)`` follows its sampling.
        """
        from pipelines.artifacts import save_artifact

        return save_artifact(
            self,
            path,
            base_model=base_model,
            overwrite=overwrite,
            sample_prompts=sample_prompts,
            evaluation=evaluation,
            num_validation_images=num_validation_images,
            validation_inference_steps=validation_inference_steps,
            callback=callback,
        )

    def apply(self, base: Any):
        """The erased model in memory: ``base`` (the model the run started from) with the changed components in.

        Nothing is written to disk and ``base`` is not changed; see ``pipelines.apply_result``. Works for every
        artifact kind (a ``StableDiffusionPipeline`` for diffusion methods, a ``GANBundle`` for GAN methods).
        """
        from pipelines.artifacts import apply_result

        return apply_result(base, self)


class EraseMethod(ABC):
    """Base class of an erasure method. Subclasses set the class attributes and implement :meth:`erase`.

    A method never mutates its input model: it copies the components it trains.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[EraseConfig]]
    model_type: ClassVar[ModelType]
    targets: ClassVar[tuple[str, ...]]
    summary: ClassVar[str]
    paper: ClassVar[str]
    code: ClassVar[str]

    def __init__(self, config: EraseConfig):
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def check(self, model: Any, *, data: EraseData | None = None) -> None:
        """Raise ``ConfigError`` for inputs only the model can show are wrong (a real model without a required
        option, say), before anything trains or draws. The CLI calls it before its progress bar;
        :meth:`erase` calls it too. The default checks nothing."""
        return None

    @abstractmethod
    def erase(self, model: Any, *, data: EraseData | None = None, callback: StepCallback | None = None) -> EraseResult:
        """Run the erasure on ``model`` and return the changed components."""


# ---------------------------------------------------------------- registry

_REGISTRY: dict[str, type[EraseMethod]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(cls: type[EraseMethod]) -> type[EraseMethod]:
    """Class decorator that adds a method to the registry under ``cls.name``.

    Refuses names that are not lower-case identifiers, duplicates, and a config class whose ``method`` differs.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"method name {name!r} must be a lower-case identifier such as 'esd' or 'adapt_then_unlearn'")
    if name in _REGISTRY:
        raise ValueError(f"a method named {name!r} is already registered ({_REGISTRY[name].__qualname__})")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, EraseConfig)):
        raise ValueError(f"{cls.__qualname__}.config_class must be a subclass of EraseConfig")
    if config_class.method != name:
        raise ValueError(f"{config_class.__qualname__}.method is {config_class.method!r}; set it to {name!r}")
    _REGISTRY[name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of every registered method, sorted."""
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[EraseMethod]:
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in _REGISTRY:
        close = difflib.get_close_matches(str(key), _REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown method {name!r}; {hint}available: {', '.join(list_methods())}")
    return _REGISTRY[key]


def get_config_class(name: str) -> type[EraseConfig]:
    """The config dataclass of a registered method."""
    return get_method_class(name).config_class


def config_from_dict(values: dict[str, Any]) -> EraseConfig:
    """Rebuild a config from :meth:`EraseConfig.to_dict` output, dispatching on its ``method`` key."""
    if "method" not in values:
        raise ConfigError('the config has no \'method\' key; add e.g. "method": "esd"')
    return get_config_class(values["method"]).from_dict(values)


def make_config(name: str, *, preset: str | None = None, **overrides: Any) -> EraseConfig:
    """Build a method's config from an optional named preset and keyword overrides (which win).

    Args:
        name (`str`): a registered method.
        preset (`str`, *optional*): ``"paper"`` (the defaults, on every method) or one of the method's own, e.g.
            ``"toy"``; ``None`` is the defaults too (:func:`erase` picks ``"toy"`` for a toy model).
        **overrides: fields of the method's config.
    """
    cls = get_config_class(name)
    values = cls.preset_values(preset) if preset is not None else {}
    values.update(overrides)
    return build_config(cls, values)


def default_preset(name: str, model: Any) -> str | None:
    """The preset :func:`erase` and the command line use when none is asked for.

    ``"toy"`` when ``model`` is a toy-world model (a loaded one, or the name ``"toy"``) and the method has a toy
    preset: the paper's settings are for SD v1.4 and would run long and barely erase on the toy model. Otherwise
    ``None``: the config's defaults, the paper's setting.
    """
    from pipelines.sd import is_toy_model

    toy = model == TOY_PRESET if isinstance(model, str) else is_toy_model(model)
    return TOY_PRESET if toy and TOY_PRESET in get_config_class(name).presets else None


def erase(
    name: str,
    model: Any,
    *,
    data: EraseData | None = None,
    callback: StepCallback | None = None,
    preset: str | None = None,
    **config: Any,
) -> EraseResult:
    """Erase a concept from ``model`` with the method registered as ``name``.

    Args:
        name (`str`): a registered method (see :func:`list_methods`).
        model: a ``StableDiffusionPipeline`` for diffusion methods, a ``GANBundle`` for GAN methods. Not mutated.
        data (`EraseData`, *optional*): in-memory prompts or images to use instead of generated ones.
        callback (`StepCallback`, *optional*): called as ``callback(step, total, logs)`` after each step.
        preset (`str`, *optional*): a named preset of the method's config: ``"paper"`` (the defaults, the paper's
            setting) or the method's own, e.g. ``"toy"``. Defaults to ``"toy"`` on a toy-world model when the method
            has one (see :func:`default_preset`), else ``"paper"``. Keyword fields override the preset.
        **config: fields of the method's config (``concept``, ``max_train_steps``, ...).

    Returns:
        `EraseResult`: call ``.save(path)`` to write the artifact.
    """
    if preset is None:
        preset = default_preset(name, model)
        if preset is not None:
            logger.info("%s: the '%s' preset on the toy model (preset='paper' for the paper's settings)", name, preset)
    cfg = make_config(name, preset=preset, **config)
    method = get_method_class(name)(cfg)
    return method.erase(model, data=data, callback=callback)


# ---------------------------------------------------------------- run bookkeeping shared by methods


class RunMeter:
    """Measures what UnlearnCanvas and peft's method comparison report: wall time, peak memory, parameters."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def metrics(self, trainable_parameters: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "wall_seconds": round(time.perf_counter() - self.start, 3),
            "trainable_parameters": int(trainable_parameters),
        }
        if self.device.type == "cuda":
            out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            out["peak_memory_kind"] = "cuda max_memory_allocated"
        else:
            # ru_maxrss is the process's peak resident set (KiB on Linux): an upper bound for this run.
            out["peak_memory_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            out["peak_memory_kind"] = "process peak RSS"
        return out


def frozen_dtype(config: EraseConfig, device: torch.device) -> torch.dtype | None:
    """The dtype of the frozen networks under ``config.mixed_precision`` (``None``: keep fp32).

    Half precision is for GPUs; on a CPU it is refused with a message rather than silently ignored.
    """
    if config.mixed_precision != "no" and torch.device(device).type != "cuda":
        raise ConfigError(f"mixed_precision={config.mixed_precision!r} needs a CUDA device; the model is on {device}")
    return {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[config.mixed_precision]


def adam(
    params: list[torch.nn.Parameter],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    use_8bit: bool = False,
) -> torch.optim.Optimizer:
    """Adam, or bitsandbytes' 8-bit Adam (``use_8bit``: both moments stored in 8 bits, a quarter of fp32's memory;
    the weights and their updates stay fp32). The methods' ``use_8bit_adam`` flags lead here."""
    if use_8bit:
        try:
            import bitsandbytes as bnb
        except ImportError as err:
            raise MissingDependencyError(
                "use_8bit_adam needs the 'bitsandbytes' package; install it with: pip install bitsandbytes "
                "(or leave use_8bit_adam off)"
            ) from err
        return bnb.optim.Adam8bit(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)


def notify(callback: StepCallback | None, step: int, total: int, logs: dict[str, float]) -> None:
    if callback is not None:
        callback(step, total, logs)
