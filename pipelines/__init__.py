"""Models and what surrounds them: loading (Stable Diffusion, StyleGAN2), artifacts, shared data, the toy world.

The lowest layer: ``erasure`` and ``gan`` (the methods), ``eval`` and ``ui`` build on it; it imports none of them.
"""

from .artifacts import apply_artifact, apply_result, read_manifest
from .errors import ArtifactError, ConfigError, ModelNotFoundError, StudioError
from .export import ExportReport, export
from .models import open_model
from .sd import generate, load_sd

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ExportReport",
    "ModelNotFoundError",
    "StudioError",
    "apply_artifact",
    "apply_result",
    "export",
    "generate",
    "load_sd",
    "open_model",
    "read_manifest",
]
