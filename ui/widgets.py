"""A method's settings as studio controls: config dataclass fields -> :class:`SettingSpec` -> Gradio components.

The studio reads the same field metadata as the command line, so a setting is described once, on its config
dataclass: the CLI builds its ``erase METHOD`` flags with ``transformers.HfArgumentParser``, which takes a flag's
type and choices from the field's type hint and its help from ``field(metadata={"help": ...})``
(``EraseConfig.help()``); :func:`setting_specs` reads the same hint and the same help, with the same rules
(``Literal`` -> choices, ``X | None`` -> an optional ``X``, ``list[int]`` -> numbers separated by spaces). Starting
values come from a named preset, read as the CLI's ``--preset`` reads it (``EraseConfig.preset_values``): ``"toy"``
for the toy world, ``"paper"`` (the field defaults, the paper's setting) for real models.

Nothing here imports gradio at module level; :func:`setting_control` takes the ``gradio`` module as an argument.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from erasure.base import TOY_PRESET
from pipelines.errors import ConfigError

STYLEGAN2 = "stylegan2"
COMMON_KEY_FIELDS = ("max_train_steps", "learning_rate", "seed")
# The method-specific fields shown next to the common ones; a method not listed gets its first few own fields.
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "esd": ("train_method", "negative_guidance"),
    "advunlearn": ("train_method", "attack_steps", "retain_loss_weight"),
    "adapt_then_unlearn": ("adapt_fraction", "repulsion", "gamma"),
    "text_to_unlearn": ("prompts", "objective", "clip"),
}
HIDDEN_FIELDS = ("concept",)  # typed in its own box


@dataclass(frozen=True)
class SettingSpec:
    """One control of a method's settings, derived from a field of its config dataclass.

    Args:
        name (`str`): the config field (and CLI flag) name.
        kind (`str`): ``choice``, ``bool``, ``int``, ``float``, ``int_list``, ``float_list``, ``text``, ``text_list``
            (one entry per line) or ``json``.
        value: the starting value (the preset's, else the field's default).
        help (`str`): the field's help text (the CLI flag's help).
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


def field_kind(hint: Any) -> tuple[str, tuple[Any, ...], bool]:
    """``(kind, choices, optional)`` of a config field's type hint, read as ``HfArgumentParser`` reads it for a flag.

    A union other than ``X | None`` (which the CLI cannot express as one flag either) and a list of anything but
    numbers are edited as JSON.
    """
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
    if origin in (list, tuple) and args and args[0] is str:
        return "text_list", (), optional
    return "json", (), optional


def preset_values(config_class: type, preset: str | None) -> dict[str, Any]:
    """The values a named preset sets on ``config_class``; ``{}`` (the field defaults, the paper's setting) for
    ``"paper"``, ``None`` and a preset the method does not have (the page offers every method's presets at once)."""
    if not preset or preset not in config_class.preset_names():
        return {}
    return config_class.preset_values(preset)


def setting_specs(name: str, preset: str | None = TOY_PRESET) -> list[SettingSpec]:
    """The settings controls of a method, one per config field (``concept`` excepted), in declaration order.

    Args:
        name (`str`): a registered method.
        preset (`str`, *optional*, defaults to `"toy"`): where values start: the method's preset of that name
            (``"toy"`` fits the toy world), else the field defaults (the paper's).

    The common key fields (steps, learning rate, seed) and a few method-specific ones (:data:`KEY_FIELDS`, else the
    method's first own fields) are marked ``key``; the rest go under "Advanced".
    """
    from erasure import EraseConfig, get_config_class

    cls = get_config_class(name)
    hints = typing.get_type_hints(cls)
    values = preset_values(cls, preset)
    helps = cls.help()
    base_fields = {f.name for f in dataclasses.fields(EraseConfig)}
    specs = []
    for f in dataclasses.fields(cls):
        if f.name in HIDDEN_FIELDS:
            continue
        kind, choices, optional = field_kind(hints[f.name])
        if f.name in values:
            value = values[f.name]
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


def format_setting(spec: SettingSpec) -> Any:
    """The value a control shows for ``spec.value``."""
    if spec.kind in ("int_list", "float_list"):
        return " ".join(str(v) for v in spec.value) if spec.value else ""
    if spec.kind == "json":
        return "" if spec.value is None else json.dumps(spec.value)
    if spec.kind == "text_list":
        return "\n".join(spec.value or [])
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
        if spec.kind == "text_list":
            return []
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
        if spec.kind == "text_list":
            return [line.strip() for line in str(value).splitlines() if line.strip()]
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{spec.name}: cannot read {value!r} as {spec.kind.replace('_', ' of ')}") from None
    return str(value).strip()


def setting_control(gr: Any, method: str, spec: SettingSpec):
    """A Gradio control for one config field (``gr`` is the ``gradio`` module), labelled with the field's name."""
    common = {"label": spec.name, "info": spec.help or None, "elem_id": f"setting-{method}-{spec.name}"}
    value = format_setting(spec)
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
    if spec.kind == "text_list":
        common["info"] = f"{spec.help} (one per line)".strip()
        return gr.Textbox(value=value, lines=2, **common)
    return gr.Textbox(value=value, **common)
