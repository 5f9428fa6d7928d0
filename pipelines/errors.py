"""Errors that the studio raises for bad input. Each message names the problem and the fix in one sentence.

The command line prints these as one line and exits with status 2; the studio shows them in the page. Anything
else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable


class StudioError(Exception):
    """Base class of the studio's user-facing errors."""


class ConfigError(StudioError, ValueError):
    """A configuration value is invalid."""


class ModelNotFoundError(StudioError, FileNotFoundError):
    """A model path, file or hub id could not be found locally."""


class ArtifactError(StudioError, ValueError):
    """An artifact folder is missing, tampered with, of an unknown format, or made for another base model."""


class NotAModelError(StudioError, ValueError):
    """A path exists but holds no loadable model: a text or truncated weights file, a folder missing components."""


class MissingDependencyError(StudioError, ImportError):
    """An optional dependency (an extra) is not installed."""


class MissingWeightsError(StudioError, FileNotFoundError):
    """Weights that cannot be downloaded here (a judge, a CLIP, an Inception) are not on disk."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency, or raise ``MissingDependencyError`` with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{purpose} needs the '{module}' package; install it with: pip install 'erasure-studio[{extra}]'"
        ) from err


def check_options(owner: str, options: Iterable[str], valid: Collection[str]) -> None:
    """Raise :class:`ConfigError` for the first of ``options`` that is not in ``valid``, naming the closest valid
    name (``difflib``) or listing them all.

    Args:
        owner (`str`): what the options are for, as the message names it (e.g. ``"the scorecard"``).
        options: the option names given.
        valid: the option names accepted.
    """
    import difflib

    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid options: {', '.join(sorted(valid))}"
            raise ConfigError(f"{owner} has no option {key!r}; {hint}")
