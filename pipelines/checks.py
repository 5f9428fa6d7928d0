"""Checks that run before any work starts: is this file or folder a loadable model, and does a path stay inside its
folder.

Every loader family (Stable Diffusion, one-step, GAN, CLIP, judges, feature extractors) calls these before it hands a
path to ``from_pretrained`` or ``safetensors``, and wraps the library call in :func:`loading`, so that "this is not a
loadable model" is one line naming what was found and what is expected (:class:`~pipelines.errors.NotAModelError`)
instead of a library's traceback. :func:`load_yaml` reads the job and config files those checks start from.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ArtifactError, NotAModelError, StudioError

_MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses larger headers too
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_OPTIONAL_COMPONENTS = frozenset({"safety_checker", "feature_extractor", "image_encoder"})


def _describe(path: Path) -> str:
    """What is at ``path``, in a few words (for "found ..." in a message)."""
    if not path.exists():
        return "nothing"
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        return f"a folder holding {shown or 'nothing'}"
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
        return f"a text file of {size} bytes"
    except UnicodeDecodeError:
        return f"a binary file of {size} bytes"


def check_safetensors(path: str | os.PathLike, *, what: str = "model weights") -> None:
    """Refuse a file that is not a complete safetensors file: text, an empty file, a bad header, or a truncated one.

    Reads only the header (a little-endian length and a JSON table of tensors) and compares the tensors' extent with
    the file size, so the check is cheap even for a 4 GB checkpoint.

    Raises:
        NotAModelError: naming what was found and what is expected.
    """
    path = Path(path)
    size = path.stat().st_size
    expected = f"expected {what} as a safetensors file (an 8-byte header length, a JSON header, then the tensors)"
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise NotAModelError(f"{path} is not loadable: found {_describe(path)}; {expected}")
        (length,) = struct.unpack("<Q", prefix)
        if length <= 0 or length > min(_MAX_HEADER, size - 8):
            raise NotAModelError(f"{path} is not loadable: found {_describe(path)}; {expected}")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a table")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError):
        raise NotAModelError(f"{path} is not loadable: found a damaged safetensors header; {expected}") from None
    if 8 + length + end > size:
        raise NotAModelError(
            f"{path} is truncated: its header lists {8 + length + end} bytes but the file has {size}; "
            "copy or download it again"
        )


def check_torch_checkpoint(path: str | os.PathLike, *, what: str = "model weights") -> None:
    """Refuse a ``.pt``/``.pth``/``.ckpt``/``.bin`` file that is neither a PyTorch zip archive nor a legacy pickle
    stream (a text file, an empty or truncated download). Nothing is unpickled here."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head[:1] == b"\x80":  # a legacy torch.save stream starts with a pickle protocol opcode
        return
    if not zipfile.is_zipfile(path):
        raise NotAModelError(
            f"{path} is not loadable: found {_describe(path)}; expected {what} as a PyTorch checkpoint "
            "(a torch.save zip archive)"
        )


def check_weights_file(path: str | os.PathLike, *, what: str = "model weights") -> None:
    """:func:`check_safetensors` or :func:`check_torch_checkpoint` by suffix."""
    path = Path(path)
    if not path.is_file():
        raise NotAModelError(f"{path} is not loadable: found {_describe(path)}; expected a file of {what}")
    if path.suffix == ".safetensors":
        check_safetensors(path, what=what)
    else:
        check_torch_checkpoint(path, what=what)


def check_weights_folder(folder: str | os.PathLike, *, what: str = "model") -> None:
    """Refuse a ``save_pretrained`` folder without ``config.json`` or weights, or whose weight files are damaged."""
    folder = Path(folder)
    expected = f"expected a {what} folder (config.json and model weights, as save_pretrained writes)"
    if not folder.is_dir():
        raise NotAModelError(f"{folder} is not loadable: found {_describe(folder)}; {expected}")
    if not (folder / "config.json").is_file():
        raise NotAModelError(f"{folder} is not loadable: found {_describe(folder)} (no config.json); {expected}")
    weights = [p for p in sorted(folder.iterdir()) if p.suffix in _WEIGHT_SUFFIXES and p.is_file()]
    if not weights:
        raise NotAModelError(f"{folder} is not loadable: found {_describe(folder)} (no weights); {expected}")
    for file in weights:
        check_weights_file(file, what=f"{what} weights")


def check_pipeline_folder(folder: str | os.PathLike, *, what: str = "Stable Diffusion pipeline") -> None:
    """Refuse a diffusers pipeline folder whose ``model_index.json`` is unreadable or names a component that is
    missing or damaged (checked before ``from_pretrained`` opens anything)."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    expected = f"expected a {what} folder (model_index.json and one subfolder per component)"
    try:
        index = json.loads(index_path.read_text())
        if not isinstance(index, dict):
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError):
        raise NotAModelError(f"{index_path} is not a readable model_index.json; {expected}") from None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or None in spec:
            continue
        component = folder / name
        if not component.is_dir() and name in _OPTIONAL_COMPONENTS:
            continue  # the studio loads Stable Diffusion without these
        if not component.is_dir():
            raise NotAModelError(f"{folder} is not loadable: its component {name}/ is missing; {expected}")
        if (component / "config.json").is_file():
            check_weights_folder(component, what=f"{name} ({spec[-1]})")


@contextmanager
def loading(source: str | os.PathLike, *, what: str, expected: str) -> Iterator[None]:
    """Turn a library's "cannot load this" (``OSError``, ``ValueError``, ``RuntimeError``, ``KeyError``, a
    safetensors error) raised inside the block into a one-line :class:`NotAModelError`; the studio's own errors
    and interrupts pass through."""
    try:
        yield
    except StudioError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise NotAModelError(f"{source} is not a loadable {what} ({reason}); expected {expected}") from err
    except Exception as err:  # safetensors_rust.SafetensorError is not an OSError
        if type(err).__name__ != "SafetensorError":
            raise
        raise NotAModelError(f"{source} is not a loadable {what} ({err}); expected {expected}") from err


def confined(folder: str | os.PathLike, relative: object, *, what: str = "file") -> Path:
    """``folder / relative``, refusing a path that leaves ``folder``.

    ``relative`` must be a non-empty relative POSIX path without ``..``; its resolved form (symlinks followed) must
    lie inside the resolved ``folder``. Used for every path an artifact manifest names, before any file is opened.

    Raises:
        ArtifactError: the path is absolute, climbs out with ``..``, or is (or passes through) a symlink that points
            outside ``folder``.
    """
    folder = Path(folder)
    hint = "the artifact was tampered with; re-create or re-download it"
    if not isinstance(relative, str) or not relative.strip() or "\x00" in relative:
        raise ArtifactError(f"artifact {folder} names a {what} path {relative!r} that is not a relative path; {hint}")
    parts = relative.replace("\\", "/").split("/")
    if relative.startswith(("/", "\\")) or Path(relative).is_absolute() or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise ArtifactError(f"artifact {folder} names an absolute {what} path {relative!r}; {hint}")
    if ".." in parts:
        raise ArtifactError(f"artifact {folder} names a {what} path {relative!r} that leaves its folder; {hint}")
    root = folder.resolve()
    target = (folder / relative).resolve()
    if target != root and root not in target.parents:
        raise ArtifactError(
            f"artifact {folder} names a {what} path {relative!r} that resolves outside its folder (a symlink); {hint}"
        )
    return folder / relative


def check_field_types(config: object, *, owner: str | None = None) -> None:
    """Refuse a dataclass field whose value does not have the field's declared type, before any range check runs.

    Handles ``int`` (not ``bool``), ``float`` (an ``int`` is converted; NaN and infinities are refused), ``str``,
    ``bool``, ``Literal``, ``X | None`` and ``list[X]``; fields of other types (modules, tensors, ``Any``) are left to
    the config's own checks.

    Raises:
        ConfigError: naming the field, the value and the expected type.
    """
    import dataclasses
    import math
    import types
    import typing

    from .errors import ConfigError

    owner = owner or type(config).__name__
    hints = typing.get_type_hints(type(config))

    def matches(value: object, hint: object) -> tuple[bool, object]:
        origin = typing.get_origin(hint)
        if hint is typing.Any:
            return True, value
        if origin in (typing.Union, types.UnionType):
            for arg in typing.get_args(hint):
                if arg is type(None):
                    if value is None:
                        return True, None
                    continue
                ok, converted = matches(value, arg)
                if ok:
                    return True, converted
            return False, value
        if origin is typing.Literal:
            return any(value == a and type(value) is type(a) for a in typing.get_args(hint)), value
        if origin is list:
            (item,) = typing.get_args(hint) or (typing.Any,)
            if not isinstance(value, (list, tuple)):
                return False, value
            out = []
            for v in value:
                ok, converted = matches(v, item)
                if not ok:
                    return False, value
                out.append(converted)
            return True, out if isinstance(value, list) else value
        if hint is bool:
            return isinstance(value, bool), value
        if hint is int:
            return isinstance(value, int) and not isinstance(value, bool), value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False, value
            return math.isfinite(value), float(value)
        if hint is str:
            return isinstance(value, str), value
        return True, value  # a type this check does not cover

    for f in dataclasses.fields(config):
        hint = hints.get(f.name)
        value = getattr(config, f.name)
        ok, converted = matches(value, hint)
        if not ok:
            if typing.get_origin(hint) is typing.Literal:
                choices = ", ".join(map(str, typing.get_args(hint)))
                raise ConfigError(f"{owner}: {f.name}={value!r} is not allowed; choose one of {choices}")
            shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            raise ConfigError(f"{owner}: {f.name}={value!r} is not a valid {shown}; give a value of that type")
        if converted is not value:
            object.__setattr__(config, f.name, converted)


# YAML 1.2's float: PyYAML resolves YAML 1.1, where "6e-5" (no dot) and "1e3" stay strings; every config file here
# means a number by them.
_YAML12_FLOAT = r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
|\.[0-9_]+(?:[eE][-+]?[0-9]+)?
|[-+]?\.(?:inf|Inf|INF)
|\.(?:nan|NaN|NAN))$"""


@functools.cache
def _yaml12_loader() -> type:
    """A ``yaml.SafeLoader`` subclass that also resolves YAML 1.2 floats (built once)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # A copy, so that SafeLoader's own resolvers (and every other user of PyYAML) stay as they are.
    Loader.yaml_implicit_resolvers = {
        key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_YAML12_FLOAT, re.X), list("-+0123456789."))
    return Loader


def load_yaml(text: str) -> object:
    """``yaml.safe_load`` with YAML 1.2's numbers: ``6e-5`` and ``1e3`` read as floats, as they do in JSON."""
    import yaml

    return yaml.load(text, Loader=_yaml12_loader())  # noqa: S506 (a SafeLoader subclass: no Python objects are built)
