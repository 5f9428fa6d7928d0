"""Loading and assembling models (Stable Diffusion, GANs), artifacts, the toy world and batch jobs."""

from .artifacts import apply_artifact, read_manifest
from .errors import ArtifactError, ConfigError, ModelNotFoundError, StudioError
from .sd import generate, load_sd

__all__ = [
    "ArtifactError",
    "ConfigError",
    "ModelNotFoundError",
    "StudioError",
    "apply_artifact",
    "generate",
    "load_sd",
    "read_manifest",
]
