"""Batch studies: one job file describes a grid of erasure runs, one call runs it on an executor, resumably.

A *study* is models x methods (each with a config grid) x concepts x seeds; each point is a *run* that a *runner*
carries out (erase, save, attack, score) and that ends with a flat dict of numbers. This module is the engine, and
it knows nothing about erasure: it reads and validates the job file's shape, expands the grid, names every run by a
hash of its resolved config, keeps the study folder consistent across crashes, and hands runs to an executor.

Why the split (the layer rule, ``pipelines`` <- ``erasure``, ``gan`` <- ``eval`` <- ``ui``): running a run needs the
method registry, the attack and the scorecard, which sit above ``pipelines``. So the runner is a picklable callable
passed in (``eval.study.run_one`` is the standard one), and so is ``resolve`` (the full config a run will use,
built from the registry, which is what the run's hash covers). Checks that need the registry (an unknown method, an
unknown config field with its closest name) live in ``eval.study.validate_study`` and run before anything starts;
``eval.study.run_study`` is the one call that wires all of it, and ``erasure-studio run`` / ``report`` (``ui/``) are
its command line.

The study folder::

    study.json         the job file as run (a different study in the same folder is refused) and the hashes
                       of the runs the last call planned: a run whose resolved config has changed since (a new
                       preset value, say) is another run, and its old record stays out of the leaderboard
    runs/<slug>-<hash>/  one folder per finished (or failed) run; done.json is the marker of a finished run
    runs/.partial/     runs in flight; a run is written here and renamed into runs/ when complete
    results.jsonl      one line per finished run, appended atomically (temp file, then os.replace)
    events.jsonl       the progress log, one JSON object per line (study/run start, steps, done, failed)
    cache/             work shared by every run: base-model images (forget/retain samples, attack targets,
                       DoCo/SalUn training images through their ``cache_dir``)

Crash safety: a run becomes visible in ``runs/`` by one rename, with ``done.json`` inside; a run killed half-way
leaves only a folder under ``runs/.partial/``, which the next call deletes and redoes. ``results.jsonl`` is
reconciled with the ``done.json`` markers at start (a line lost between the rename and the append is restored; a
line is never written twice). A run that raises writes ``error.json`` (its one-line error) instead of ``done.json``
and does not stop the others; ``retry_failed=True`` redoes it.

Executors, each an existing engine: ``local`` (``concurrent.futures.ProcessPoolExecutor``, a fresh spawned process
per run, one run per visible GPU or CPU slot), ``slurm`` (``submitit``: one job array on Slurm, or its local
executor for testing) and ``ray`` (one task per run with its CPU/GPU resources). ``accelerate`` stays the engine
inside one run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as _dt
import difflib
import fnmatch
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .checks import load_yaml
from .errors import ConfigError, check_options, require

EXECUTORS: tuple[str, ...] = ("local", "slurm", "ray")
ExecutorName = Literal["local", "slurm", "ray"]
STUDY_FILE = "study.json"
RESULTS_FILE = "results.jsonl"
EVENTS_FILE = "events.jsonl"
RUNS_DIR = "runs"
PARTIAL_DIR = ".partial"
CACHE_DIR = "cache"
DONE_FILE = "done.json"
ERROR_FILE = "error.json"
RUN_FILE = "run.json"
STUDY_FORMAT = 1

Runner = Callable[["RunSpec", Path, "RunContext"], dict[str, Any]]
"""``runner(run, workdir, context) -> metrics``: carries out one run, writing its files under ``workdir``."""
Resolver = Callable[["RunSpec"], dict[str, Any]]
"""``resolve(run) -> config``: the full config a run will use (what its hash covers)."""
EventCallback = Callable[[dict[str, Any]], None]
"""``callback(event)``: every event of the study as it is logged (a dict with at least ``event`` and ``time``)."""


# ---------------------------------------------------------------- the job file schema


@dataclass
class MethodSpec:
    """One method of the study and its config grid.

    Args:
        name (`str`): a registered method (``esd``, ``salun``, ...).
        preset (`str`, *optional*): a named preset of the method's config (``toy``, ``paper``); fields override it.
        config (`dict`): config fields. A list expands into a grid axis (the product of every axis is run); a field
            whose value is itself a list is written as a one-element grid, ``[[a, b]]``.
        label (`str`, *optional*): the method's name in the leaderboard (default: ``name`` or ``name (preset)``).
    """

    name: str = field(metadata={"help": "A registered method: esd, advunlearn, salun, doco, sfd, adapt_then_unlearn."})
    preset: str | None = field(default=None, metadata={"help": "A named preset of the config (toy, paper)."})
    config: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Config fields; a list is a grid axis ([[a, b]] for a list value)."}
    )
    label: str | None = field(default=None, metadata={"help": "Name of the method in the leaderboard."})


@dataclass
class AttackSpec:
    """The UnlearnDiffAtk attack chained after each erasure (diffusion methods).

    Args:
        enabled (`bool`, defaults to `True`): run it.
        prompts (`str`, defaults to `"toy:{concept}"`): the prompt set, ``{concept}`` replaced by the run's concept:
            a CSV path, a bundled set's name, or ``toy:OBJECT``.
        judge (`str`, defaults to `"toy"`): the judge that decides success.
        limit (`int`, *optional*): attack only the first ``limit`` prompts.
        config (`dict`): fields of ``eval.AttackConfig`` (``schedule``, ``iterations_per_timestep``, ...).
    """

    enabled: bool = field(default=True, metadata={"help": "Run the attack after each erasure."})
    prompts: str = field(
        default="toy:{concept}", metadata={"help": "Prompt set; {concept} is the run's concept (CSV, name, toy:X)."}
    )
    judge: str = field(default="toy", metadata={"help": "Judge of success: toy, nudenet, imagenet, classifier:PATH."})
    limit: int | None = field(default=None, metadata={"help": "Attack only the first N prompts."})
    config: dict[str, Any] = field(default_factory=dict, metadata={"help": "Fields of eval.AttackConfig."})


@dataclass
class ScorecardSpec:
    """The scorecard chained after each erasure (and its attack).

    Args:
        enabled (`bool`, defaults to `True`): run it.
        judge (`str`, defaults to `"toy"`): the judge of forget/retain rates and UA/IRA/CRA.
        config (`dict`): fields of ``eval.ScorecardConfig`` (``seeds``, ``clip``, ``fid_features``, ...).
    """

    enabled: bool = field(default=True, metadata={"help": "Score each erased model against its base."})
    judge: str = field(default="toy", metadata={"help": "Judge of forget/retain rates and UA/IRA/CRA."})
    config: dict[str, Any] = field(default_factory=dict, metadata={"help": "Fields of eval.ScorecardConfig."})


@dataclass
class EvaluationsSpec:
    """What each run does after its erasure, in order: the attack, then the scorecard (which reads the attack)."""

    attack: AttackSpec = field(default_factory=AttackSpec, metadata={"help": "The UnlearnDiffAtk attack."})
    scorecard: ScorecardSpec = field(default_factory=ScorecardSpec, metadata={"help": "The scorecard."})


@dataclass
class ResourcesSpec:
    """Where and how runs execute. Not part of a run's identity: the same study gives the same runs everywhere.

    Args:
        torch_threads (`int`, *optional*): ``torch.set_num_threads`` in every run (default: the CPU cores divided
            by the runs in parallel). Runs give the same numbers under every executor when this is the same.
        max_parallel (`int`, *optional*): runs at once (local default: one per visible GPU, else 1).
        gpus_per_run (`int`, defaults to 0 on a machine without GPUs, 1 with): GPUs a Slurm job or Ray task asks for.
        cpus_per_run (`int`, defaults to 1): CPUs a Slurm job or Ray task asks for.
        slurm_partition, slurm_time_min, slurm_array_parallelism, slurm_cluster: submitit's settings
            (``slurm_cluster="local"`` runs the same code path with submitit's local executor).
        ray_address (`str`, *optional*): ``ray.init(address=...)``; ``None`` starts a local cluster.
        ray_num_cpus (`int`, *optional*): CPUs of a local Ray cluster.
    """

    torch_threads: int | None = field(default=None, metadata={"help": "torch threads per run."})
    max_parallel: int | None = field(default=None, metadata={"help": "Runs at once."})
    gpus_per_run: int | None = field(default=None, metadata={"help": "GPUs per Slurm job / Ray task."})
    cpus_per_run: int = field(default=1, metadata={"help": "CPUs per Slurm job / Ray task."})
    slurm_partition: str | None = field(default=None, metadata={"help": "Slurm partition."})
    slurm_time_min: int = field(default=240, metadata={"help": "Slurm time limit per run, in minutes."})
    slurm_array_parallelism: int | None = field(
        default=None, metadata={"help": "Jobs of the array running at once (default: max_parallel)."}
    )
    slurm_cluster: str | None = field(
        default=None, metadata={"help": "submitit cluster: None (auto: slurm when sbatch exists), slurm, local."}
    )
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address; none starts a local one."})
    ray_num_cpus: int | None = field(default=None, metadata={"help": "CPUs of a local Ray cluster."})


@dataclass
class StudySpec:
    """A job file: what to run (the grid and the evaluations) and where (resources).

    Args:
        name (`str`): the study's name.
        models (`list[str]`): base models (``toy``, a folder, a file, a cached hub id); ``${VAR}`` reads the
            environment.
        methods (`list[MethodSpec]`): methods and their config grids.
        concepts (`list[str]`): concepts to erase, one run each.
        seeds (`list[int]`): seeds, one run each (the config's ``seed``).
        evaluations (`EvaluationsSpec`): the attack and the scorecard chained after each erasure.
        validation_images (`int`, defaults to 0): images per prompt of each artifact's before/after grid.
        device (`str`, *optional*): device inside a run (default: ``cuda`` when the run sees a GPU, else ``cpu``).
        resources (`ResourcesSpec`): executor settings.
    """

    name: str = field(metadata={"help": "The study's name."})
    methods: list[MethodSpec] = field(metadata={"help": "Methods with their config grids."})
    concepts: list[str] = field(metadata={"help": "Concepts to erase."})
    models: list[str] = field(default_factory=lambda: ["toy"], metadata={"help": "Base models."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Seeds, one run each."})
    evaluations: EvaluationsSpec = field(default_factory=EvaluationsSpec, metadata={"help": "Attack, scorecard."})
    validation_images: int = field(default=0, metadata={"help": "Before/after grid images per prompt (0: none)."})
    device: str | None = field(default=None, metadata={"help": "Device inside a run (default: cuda if seen)."})
    resources: ResourcesSpec = field(default_factory=ResourcesSpec, metadata={"help": "Executor settings."})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What makes two studies the same (everything but ``resources``)."""
        data = self.to_dict()
        data.pop("resources")
        return data


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """Build a (nested) spec dataclass from a mapping; an unknown key is a ``ConfigError`` naming the closest."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of fields to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_options(where, [str(k) for k in data], fields)
    values: dict[str, Any] = {}
    nested = {c.__name__: c for c in (AttackSpec, ScorecardSpec, EvaluationsSpec, ResourcesSpec)}
    for key, value in data.items():
        hint = str(fields[key].type)  # a string: this module uses postponed annotations
        if hint in nested:
            values[key] = _from_dict(nested[hint], value or {}, f"{where}.{key}")
        elif hint == "list[MethodSpec]":
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{key} must be a list of methods, e.g. [{{name: esd, preset: toy}}]")
            values[key] = [
                _from_dict(MethodSpec, {"name": m} if isinstance(m, str) else m, f"{where}.{key}[{i}]")
                for i, m in enumerate(value)
            ]
        else:
            values[key] = value
    missing = [
        n
        for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where} needs the field {missing[0]!r} ({fields[missing[0]].metadata.get('help', '')})")
    return cls(**values)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, where: str) -> Any:
    """``${VAR}`` in every string of the job file, from the environment (an unset variable is an error)."""
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where} uses ${{{name}}}, which is not set; export {name}=... first")
            return os.environ[name]

        return _ENV.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _expand_env(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def load_spec(source: str | os.PathLike | Mapping[str, Any] | StudySpec) -> StudySpec:
    """Read and check a job file (YAML or JSON), a mapping, or return a :class:`StudySpec` as it is.

    Only the checks that need no method registry happen here (the shape, non-empty lists and grids, model paths,
    environment variables); ``eval.study.validate_study`` adds the rest. Every problem is a one-line
    :class:`~pipelines.errors.ConfigError`.
    """
    if isinstance(source, StudySpec):
        spec = source
    else:
        where = "the job file"
        if isinstance(source, Mapping):
            data: Any = dict(source)
        else:
            path = Path(source).expanduser()
            where = f"job file {path}"
            if not path.is_file():
                raise ConfigError(f"{where} does not exist; check the path")
            text = path.read_text()
            try:
                if path.suffix == ".json":
                    data = json.loads(text)
                else:
                    data = load_yaml(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{where} is not valid JSON: {err.msg} at line {err.lineno}") from err
            except Exception as err:  # yaml.YAMLError
                mark = getattr(err, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(err, "problem", None) or err.__class__.__name__
                raise ConfigError(f"{where} is not valid YAML: {problem}{at}") from err
        data = _expand_env(data, where)
        spec = _from_dict(StudySpec, data, where)
    check_spec(spec)
    return spec


def check_spec(spec: StudySpec) -> None:
    """The registry-free checks of a study (see :func:`load_spec`)."""
    if not isinstance(spec.name, str) or not spec.name.strip():
        raise ConfigError("the study needs a name, e.g. name: toy-quick")
    for key, kind in (("models", "model"), ("concepts", "concept"), ("methods", "method")):
        values = getattr(spec, key)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"the study's {key} list is empty; give at least one {kind}")
    for concept in spec.concepts:
        if not isinstance(concept, str) or not concept.strip():
            raise ConfigError(f"concepts holds {concept!r}; every concept is a non-empty string such as 'star'")
    if not isinstance(spec.seeds, list) or not spec.seeds:
        raise ConfigError("the study's seeds list is empty; give at least one seed, e.g. seeds: [0]")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in spec.seeds):
        raise ConfigError(f"seeds must be integers, got {spec.seeds!r}")
    for i, method in enumerate(spec.methods):
        for key in ("concept", "seed"):
            if key in method.config:
                raise ConfigError(f"methods[{i}] ({method.name}) sets {key!r}; the study's {key}s list sets it")
        if not grid_points(method.config):
            empty = [k for k, v in method.config.items() if isinstance(v, list) and not v]
            raise ConfigError(
                f"methods[{i}] ({method.name}): the config grid is empty (the list {empty[0]!r} has no values); "
                "give each grid axis at least one value"
            )
    for model in spec.models:
        check_model_name(model)
    if not isinstance(spec.validation_images, int) or spec.validation_images < 0:
        raise ConfigError(f"validation_images must be 0 or more, got {spec.validation_images!r}")
    attack = spec.evaluations.attack
    if attack.limit is not None and (not isinstance(attack.limit, int) or attack.limit < 1):
        raise ConfigError(f"evaluations.attack.limit must be a positive integer, got {attack.limit!r}")
    res = spec.resources
    for key in ("torch_threads", "max_parallel", "slurm_array_parallelism", "ray_num_cpus"):
        value = getattr(res, key)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"resources.{key} must be a positive integer, got {value!r}")


def check_model_name(model: Any) -> None:
    """A base model must be ``toy``, an existing path, or a hub id (checked against the cache when it loads)."""
    from .sd import looks_like_hub_id

    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"models holds {model!r}; give 'toy', a model folder or file, or a hub id")
    if model in ("toy", "toy-onestep") or Path(model).expanduser().exists():
        return
    if looks_like_hub_id(model):
        return
    raise ConfigError(f"model path {model} does not exist; fix the path in the job file's models list")


def grid_points(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The product of a config grid: every list is an axis (in key order), every other value is fixed.

    >>> grid_points({"learning_rate": [1e-5, 1e-4], "max_train_steps": 10})
    [{'learning_rate': 1e-05, 'max_train_steps': 10}, {'learning_rate': 0.0001, 'max_train_steps': 10}]
    """
    keys = list(config)
    axes = [config[k] if isinstance(config[k], list) else [config[k]] for k in keys]
    return [dict(zip(keys, values)) for values in itertools.product(*axes)]


# ---------------------------------------------------------------- runs


@dataclass
class RunSpec:
    """One run of a study: plain data, picklable, the same under every executor.

    Args:
        name (`str`): its folder name, ``<slug>-<hash>``.
        hash (`str`): :func:`config_hash` of :attr:`identity`.
        slug (`str`): the readable part (method, concept, seed, grid values).
        index (`int`): its place in the study's plan (the leaderboard's order).
        model, method, preset, label, concept, seed: what the run is.
        overrides (`dict`): the grid point's config fields.
        config (`dict`): the full config the run will use (from ``resolve``; the overrides when there is none).
        evaluations (`dict`): the attack and scorecard settings.
        validation_images (`int`), device (`str`, *optional*): artifact grid size and device.
    """

    name: str
    hash: str
    slug: str
    index: int
    model: str
    method: str
    preset: str | None
    label: str
    concept: str
    seed: int
    overrides: dict[str, Any]
    config: dict[str, Any]
    evaluations: dict[str, Any]
    validation_images: int = 0
    device: str | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """What the hash covers: model, method, the resolved config, the evaluations and the artifact grid."""
        return {
            "model": self.model,
            "method": self.method,
            "config": self.config,
            "evaluations": self.evaluations,
            "validation_images": self.validation_images,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def config_hash(identity: Mapping[str, Any], length: int = 12) -> str:
    """A short stable hash of a JSON-serialisable mapping (sorted keys, no whitespace)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _slug(text: str, limit: int = 80) -> str:
    from .data import slugify

    return slugify(text, limit)


def method_label(method: MethodSpec) -> str:
    """A method's name in the leaderboard: its ``label``, else ``name (preset)``, else ``name``."""
    return method.label or (f"{method.name} ({method.preset})" if method.preset else method.name)


def expand_runs(spec: StudySpec, resolve: Resolver | None = None) -> list[RunSpec]:
    """Every run of the study, in plan order: models, methods, grid points, concepts, seeds.

    Args:
        spec (`StudySpec`): the study.
        resolve (*optional*): ``resolve(run) -> config``, the full config a run will use (``eval.study`` builds it
            from the method registry); without it a run's config is its preset name and overrides.

    Raises:
        ConfigError: two entries of the study describe the same run.
    """
    runs: list[RunSpec] = []
    seen: dict[str, str] = {}
    evaluations = dataclasses.asdict(spec.evaluations)
    multi_model = len(spec.models) > 1
    for model in spec.models:
        for m_index, method in enumerate(spec.methods):
            points = grid_points(method.config)
            axes = [k for k, v in method.config.items() if isinstance(v, list) and len(v) > 1]
            label = method_label(method)
            for point in points:
                for concept in spec.concepts:
                    for seed in spec.seeds:
                        parts = [method.name, concept, f"seed{seed}"]
                        parts += [f"{k}{point[k]}" for k in axes]
                        if multi_model:
                            parts.insert(0, Path(model).name or model)
                        run = RunSpec(
                            name="",
                            hash="",
                            slug=_slug("-".join(map(str, parts))),
                            index=len(runs),
                            model=model,
                            method=method.name,
                            preset=method.preset,
                            label=label,
                            concept=concept.strip(),
                            seed=seed,
                            overrides=dict(point),
                            config={"preset": method.preset, **point, "concept": concept.strip(), "seed": seed},
                            evaluations=evaluations,
                            validation_images=spec.validation_images,
                            device=spec.device,
                        )
                        if resolve is not None:
                            run.config = resolve(run)
                        run.hash = config_hash(run.identity)
                        run.name = f"{run.slug}-{run.hash}"
                        where = f"methods[{m_index}] ({method.name}), concept {concept!r}, seed {seed}"
                        if run.hash in seen:
                            raise ConfigError(f"{where} repeats the run of {seen[run.hash]}; remove the duplicate")
                        seen[run.hash] = where
                        runs.append(run)
    return runs


def select_methods(spec: StudySpec, names: Sequence[str]) -> StudySpec:
    """The study cut to some of its methods (``erasure-studio run --methods``), in the job file's order.

    The cut study is a study of its own (its ``study.json`` names only the kept methods, so its folder is not the full
    study's), but every run keeps the name and hash it has in the full study: a cut run with another
    ``--torch_threads`` in a second folder is the same run measured again, and the two folders compare run by run.

    Args:
        spec (`StudySpec`): the study.
        names (`list[str]`): method names (``doco``) or leaderboard labels (``doco (toy)``); each must select one.

    Raises:
        ConfigError: a name selects no method of the study (the message lists the study's methods).
    """
    spec = load_spec(spec)
    kept: set[int] = set()
    for name in names:
        found = {i for i, method in enumerate(spec.methods) if name in (method.name, method_label(method))}
        if not found:
            have = list(dict.fromkeys(method.name for method in spec.methods))
            close = difflib.get_close_matches(name, have, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"--methods {name!r} is not a method of study {spec.name!r}; {hint}it has: {', '.join(have)}"
            )
        kept |= found
    return dataclasses.replace(spec, methods=[m for i, m in enumerate(spec.methods) if i in kept])


# ---------------------------------------------------------------- the study folder


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary name next to ``path``, then rename it into place (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file; a torn last line (a crash mid-write elsewhere) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_result(path: str | os.PathLike, record: Mapping[str, Any]) -> bool:
    """Add one line to ``results.jsonl`` atomically: the whole file is rewritten to a temporary name and renamed,
    so a crash leaves the old file or the new one, never a torn line. A run whose hash is already there is not
    added again. Returns whether the line was added. Only the study's coordinating process calls this."""
    path = Path(path)
    rows = read_jsonl(path)
    if any(row.get("hash") == record["hash"] for row in rows):
        return False
    lines = [json.dumps(row, sort_keys=True, default=str) for row in rows + [dict(record)]]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return True


class EventLog:
    """The study's JSON-lines progress log. Any process may append: each event is one ``write`` on a file opened
    with ``O_APPEND``, so lines from concurrent runs never interleave."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"time": round(time.time(), 3), "event": event, **fields}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return record


@dataclass
class RunContext:
    """What a runner gets besides its run and its folder.

    Args:
        study_dir (`Path`): the study folder.
        cache_dir (`Path`): the study's shared cache (base-model images, attack targets, DoCo/SalUn images).
        device (`str`): the device the run should use.
        progress (`Callable`): ``progress(step, total, logs)``, the toolkit's progress signature; it logs step events
            (at most one a second, plus every stage change and the last step).
    """

    study_dir: Path
    cache_dir: Path
    device: str
    progress: Callable[[int, int, Mapping[str, Any]], None]


class _StepEvents:
    def __init__(self, log: EventLog, run: RunSpec, min_interval: float = 1.0):
        self.log, self.run, self.min_interval = log, run, min_interval
        self.last, self.stage = 0.0, None

    def __call__(self, step: int, total: int, logs: Mapping[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        stage = logs.get("stage", self.stage)
        now = time.monotonic()
        if stage == self.stage and step < total and now - self.last < self.min_interval:
            return
        self.last, self.stage = now, stage
        numbers = {k: v for k, v in logs.items() if isinstance(v, (int, float, str)) and k != "stage"}
        self.log.emit("run_step", run=self.run.name, step=step, total=total, stage=stage, logs=numbers)


def one_line(err: BaseException) -> str:
    """An exception as one line: ``Type: message`` (the first line of the message)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def hardware(device: str) -> dict[str, Any]:
    """The machine a run used (host, platform, Python, torch and its threads, the GPU's name)."""
    import torch

    out: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _peak_memory(device: str) -> tuple[float, str]:
    import resource

    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1), "cuda max_memory_allocated"
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "process peak RSS"


def execute_run(
    runner: Runner,
    run: RunSpec | Mapping[str, Any],
    study_dir: str | os.PathLike,
    *,
    device: str | None = None,
    gpu: int | None = None,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """Carry out one run in this process and make its folder appear complete, or not at all.

    Every executor calls this in its worker (a fresh process per run): it pins the GPU and the torch threads, runs
    ``runner`` in ``runs/.partial/<name>-<pid>/``, writes ``done.json`` there (the run's result line) and renames the
    folder to ``runs/<name>``. A runner that raises leaves ``error.json`` (its one-line error) instead. Never raises
    for a failing run: the returned dict says ``status`` (``"done"`` or ``"failed"``).
    """
    if gpu is not None:  # before CUDA is initialised in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if isinstance(run, Mapping):
        run = RunSpec.from_dict(run)
    study = Path(study_dir)
    log = EventLog(study / EVENTS_FILE)
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    device = device or run.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    final = study / RUNS_DIR / run.name
    work = study / RUNS_DIR / PARTIAL_DIR / f"{run.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    work.mkdir(parents=True)
    atomic_write_json(work / RUN_FILE, run.to_dict())
    log.emit("run_start", run=run.name, pid=os.getpid(), host=platform.node(), device=device)
    start = time.perf_counter()
    context = RunContext(study, study / CACHE_DIR, device, _StepEvents(log, run))
    try:
        metrics = runner(run, work, context)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"the runner returned {type(metrics).__name__}, not a dict of results")
        seconds = round(time.perf_counter() - start, 3)
        memory, memory_kind = _peak_memory(device)
        record = {
            "run": run.name,
            "hash": run.hash,
            "index": run.index,
            "model": run.model,
            "method": run.method,
            "label": run.label,
            "concept": run.concept,
            "seed": run.seed,
            "overrides": run.overrides,
            "config": run.config,
            "folder": f"{RUNS_DIR}/{run.name}",
            **dict(metrics),
            "seconds": seconds,
            "peak_memory_mb": memory,
            "peak_memory_kind": memory_kind,
            "hardware": hardware(device),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        json.dumps(record)  # a runner must return JSON data; fail here rather than after the rename
        atomic_write_json(work / DONE_FILE, record)
        _publish(work, final)
        log.emit("run_done", run=run.name, seconds=seconds)
        return {"status": "done", "record": record}
    except Exception as err:
        error = one_line(err)
        atomic_write_json(work / ERROR_FILE, {"run": run.name, "error": error, "traceback": traceback.format_exc()})
        _publish(work, final)
        log.emit("run_failed", run=run.name, error=error)
        return {"status": "failed", "run": run.name, "error": error}


def _publish(work: Path, final: Path) -> None:
    """Rename a finished run's folder into place (a finished copy already there wins; a failed one is replaced)."""
    if (final / DONE_FILE).exists():
        shutil.rmtree(work, ignore_errors=True)
        return
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)


# ---------------------------------------------------------------- executors


@contextlib.contextmanager
def _child_pythonpath() -> Iterator[None]:
    """``PYTHONPATH`` set to this process's ``sys.path`` while jobs are submitted, so that a runner defined in any
    module this process can import (a script, a test) unpickles in a Slurm/submitit or Ray worker as well."""
    old = os.environ.get("PYTHONPATH")
    paths = [p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p)]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths + ([old] if old else [])))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover
        return 0


def _die_with_parent() -> None:
    """Linux: a local worker is killed when its coordinator dies (even by SIGKILL), so that no orphan keeps writing
    into a study that a later call is resuming. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class _LocalPool:
    """A process pool over the visible GPUs (one run per GPU) or CPU slots: a fresh spawned process per run."""

    def __init__(self, slots: int, study: Path, threads: int | None, device: str | None):
        self.gpus = _gpu_count()
        import multiprocessing

        # A fresh process per run (Python >= 3.11): its peak memory is the run's own and nothing leaks between runs.
        fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
        self.pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=slots,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with_parent,
            **fresh,
        )
        self.study, self.threads, self.device = study, threads, device
        self.free = list(range(slots))

    def submit(self, runner: Runner, run: RunSpec) -> Any:
        slot = self.free.pop(0)
        gpu = slot % self.gpus if self.gpus and self.device != "cpu" else None
        future = self.pool.submit(
            execute_run, runner, run.to_dict(), str(self.study), gpu=gpu, torch_threads=self.threads
        )
        future.slot = slot  # type: ignore[attr-defined]
        return future

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = concurrent.futures.wait(handles, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        out = []
        for future in done:
            self.free.append(future.slot)
            try:
                out.append((future, future.result()))
            except Exception as err:  # the worker process died (killed, out of memory)
                out.append((future, {"status": "failed", "error": f"worker died: {one_line(err)}"}))
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _SubmititPool:
    """Slurm through submitit: one job array when the cluster is Slurm, or submitit's local executor (the same code
    path minus sbatch; jobs are then started as slots free, since the local executor ignores array parallelism)."""

    def __init__(self, slots: int, study: Path, threads: int | None, res: ResourcesSpec, study_name: str):
        submitit = require("submitit", "jobs", "The slurm executor")
        self.executor = submitit.AutoExecutor(folder=study / "slurm" / "%j", cluster=res.slurm_cluster)
        gpus = res.gpus_per_run if res.gpus_per_run is not None else (1 if self.executor.cluster == "slurm" else 0)
        parameters: dict[str, Any] = {
            "timeout_min": res.slurm_time_min,
            "cpus_per_task": res.cpus_per_run,
            "name": f"erasure-{_slug(study_name, 40)}",
            "slurm_array_parallelism": res.slurm_array_parallelism or slots,
        }
        if gpus:
            parameters["gpus_per_node"] = gpus
        if res.slurm_partition:
            parameters["slurm_partition"] = res.slurm_partition
        self.executor.update_parameters(**parameters)
        self.array = self.executor.cluster == "slurm"
        self.study, self.threads = study, threads
        self.device = "cuda" if gpus else "cpu"

    def _args(self, runner: Runner, run: RunSpec) -> tuple[Any, ...]:
        return (_submitit_entry, runner, run.to_dict(), str(self.study), self.device, self.threads)

    def submit_all(self, runner: Runner, runs: list[RunSpec]) -> list[Any]:
        with _child_pythonpath(), self.executor.batch():
            jobs = [self.executor.submit(*self._args(runner, run)) for run in runs]
        return jobs

    def submit(self, runner: Runner, run: RunSpec) -> Any:
        with _child_pythonpath():
            return self.executor.submit(*self._args(runner, run))

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while True:
            finished = [job for job in handles if job.done()]
            if finished or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        out = []
        for job in finished:
            try:
                out.append((job, job.result()))
            except Exception as err:  # the job died, timed out or was cancelled
                out.append((job, {"status": "failed", "error": f"slurm job {job.job_id} failed: {one_line(err)}"}))
        return out

    def close(self) -> None:
        return None


def _submitit_entry(runner: Runner, run: dict[str, Any], study: str, device: str, threads: int | None):
    return execute_run(runner, run, study, device=device, torch_threads=threads)


class _RayPool:
    """One Ray task per run with its CPU/GPU resources, on ``ray.init(address=...)`` or a local cluster."""

    def __init__(self, study: Path, threads: int | None, res: ResourcesSpec):
        self.ray = require("ray", "jobs", "The ray executor")
        self.started = False
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if res.ray_address:
                kwargs["address"] = res.ray_address
            elif res.ray_num_cpus:
                kwargs["num_cpus"] = res.ray_num_cpus
            with _child_pythonpath():
                paths = os.environ["PYTHONPATH"]
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": paths}}
            self.ray.init(**kwargs)
            self.started = True
        gpus = res.gpus_per_run if res.gpus_per_run is not None else (1 if _gpu_count() else 0)
        # max_calls=1: a fresh worker process per run, as under the other executors (peak memory is the run's own).
        self.remote = self.ray.remote(num_cpus=res.cpus_per_run, num_gpus=gpus, max_calls=1)(_ray_entry)
        self.study, self.threads = study, threads
        self.device = "cuda" if gpus else "cpu"

    def submit(self, runner: Runner, run: RunSpec) -> Any:
        return self.remote.remote(runner, run.to_dict(), str(self.study), self.device, self.threads)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, dict[str, Any]]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as err:  # the task's worker died
                out.append((ref, {"status": "failed", "error": f"ray task failed: {one_line(err)}"}))
        return out

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _ray_entry(runner: Runner, run: dict[str, Any], study: str, device: str, threads: int | None):
    return execute_run(runner, run, study, device=device, torch_threads=threads)


# ---------------------------------------------------------------- running a study


@dataclass
class StudyResult:
    """What :func:`run_jobs` did.

    Args:
        output_dir (`Path`): the study folder.
        runs (`list[RunSpec]`): every run of the plan.
        finished (`list[str]`): runs finished in this call.
        skipped (`list[str]`): runs already finished before it.
        failed (`dict[str, str]`): runs that failed (in this call, or before it and not retried): their errors.
        records (`list[dict]`): every line of ``results.jsonl``, in plan order.
        dry_run (`bool`): nothing ran.
    """

    output_dir: Path
    runs: list[RunSpec]
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    def status(self, run: RunSpec) -> str:
        if run.name in self.failed:
            return "failed"
        if run.name in self.finished or run.name in self.skipped:
            return "done"
        return "pending"


def run_status(output_dir: str | os.PathLike, run: RunSpec) -> str:
    """``done`` (``done.json`` exists), ``failed`` (``error.json`` exists) or ``pending``."""
    folder = Path(output_dir) / RUNS_DIR / run.name
    if (folder / DONE_FILE).is_file():
        return "done"
    if (folder / ERROR_FILE).is_file():
        return "failed"
    return "pending"


def check_output_folder(output_dir: str | os.PathLike, spec: StudySpec) -> None:
    """Refuse a folder that holds another study (its ``study.json`` differs from ``spec`` outside ``resources``), or
    that holds other files without any ``study.json``."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} is a file; choose a folder for the study")
    marker = out / STUDY_FILE
    if marker.is_file():
        try:
            held = json.loads(marker.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{marker} is not valid JSON; choose another --output_dir") from err
        if held.get("identity") != json.loads(json.dumps(spec.identity(), default=str)):
            name = held.get("identity", {}).get("name", "?")
            raise ConfigError(
                f"output folder {out} holds a different study ({name!r}, another job file or grid); "
                "choose another --output_dir"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} holds files that are not a study; choose another --output_dir")


def _matching(runs: list[RunSpec], patterns: Sequence[str]) -> set[str]:
    """Names of the runs that ``patterns`` (names or shell patterns) select; a pattern selecting none is an error."""
    names = [run.name for run in runs]
    selected: set[str] = set()
    for pattern in patterns:
        found = fnmatch.filter(names, pattern)
        if not found:
            close = difflib.get_close_matches(pattern, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; list them with --dry_run"
            raise ConfigError(f"--redo {pattern!r} matches no run of this study{hint}")
        selected.update(found)
    return selected


def _reconcile(out: Path, runs: list[RunSpec]) -> None:
    """Make ``results.jsonl`` hold exactly one line per finished run of the plan (a crash between a run's rename and
    its append loses the line; its ``done.json`` has it)."""
    results = out / RESULTS_FILE
    have = {row.get("hash") for row in read_jsonl(results)}
    for run in runs:
        done = out / RUNS_DIR / run.name / DONE_FILE
        if run.hash not in have and done.is_file():
            append_result(results, json.loads(done.read_text()))


def run_jobs(
    spec: StudySpec | str | os.PathLike | Mapping[str, Any],
    output_dir: str | os.PathLike,
    *,
    runner: Runner,
    executor: str = "local",
    resolve: Resolver | None = None,
    max_parallel: int | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    redo: Sequence[str] = (),
    callback: EventCallback | None = None,
    poll_seconds: float = 0.5,
) -> StudyResult:
    """Run every unfinished run of a study on an executor; resumable, one failing run never stops the others.

    Args:
        spec: a :class:`StudySpec`, a job file (YAML/JSON) or its mapping.
        output_dir: the study folder (created; a folder holding another study is refused).
        runner (`Runner`): ``runner(run, workdir, context) -> metrics``, picklable (a module-level function); the
            standard one is ``eval.study.run_one``.
        executor (`str`, defaults to `"local"`): ``local``, ``slurm`` (submitit) or ``ray``.
        resolve (*optional*): ``resolve(run) -> config`` (see :func:`expand_runs`).
        max_parallel (`int`, *optional*): runs at once; overrides ``resources.max_parallel``.
        dry_run (`bool`, defaults to `False`): check everything and plan, write nothing, run nothing.
        retry_failed (`bool`, defaults to `False`): redo runs that failed before (else they stay failed).
        redo (`list[str]`, *optional*): run names or shell patterns (``esd-star-seed1-*``) of finished runs to run
            again (a run whose timing a busy machine spoiled, say): their folders and ``results.jsonl`` lines go.
        callback (*optional*): ``callback(event)`` for every event logged (the CLI's live table).
        poll_seconds (`float`, defaults to 0.5): how often progress events are read while runs are in flight.

    Returns:
        :class:`StudyResult`.
    """
    spec = load_spec(spec)
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if max_parallel is not None and (isinstance(max_parallel, bool) or max_parallel < 1):
        raise ConfigError(f"max_parallel must be at least 1, got {max_parallel}")
    out = Path(output_dir).expanduser()
    check_output_folder(out, spec)
    runs = expand_runs(spec, resolve)
    result = StudyResult(output_dir=out, runs=runs, dry_run=dry_run)
    statuses = {run.name: run_status(out, run) for run in runs}
    redone = _matching(runs, redo)
    result.skipped = [r.name for r in runs if statuses[r.name] == "done" and r.name not in redone]
    todo = [
        r
        for r in runs
        if statuses[r.name] == "pending" or (retry_failed and statuses[r.name] == "failed") or r.name in redone
    ]
    for run in runs:
        if statuses[run.name] == "failed" and not retry_failed:
            error = json.loads((out / RUNS_DIR / run.name / ERROR_FILE).read_text()).get("error", "failed")
            result.failed[run.name] = error
    if dry_run:
        result.records = _ordered_records(out, runs)
        return result

    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / ".study.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise ConfigError(f"another process is running the study in {out}; wait for it or stop it") from err
    try:
        identity = json.loads(json.dumps(spec.identity(), default=str))
        plan = [run.hash for run in runs]
        atomic_write_json(
            out / STUDY_FILE, {"format": STUDY_FORMAT, "identity": identity, "spec": spec.to_dict(), "plan": plan}
        )
        shutil.rmtree(out / RUNS_DIR / PARTIAL_DIR, ignore_errors=True)  # runs killed half-way: redone below
        (out / RUNS_DIR).mkdir(exist_ok=True)
        (out / CACHE_DIR).mkdir(exist_ok=True)
        for run in todo:
            if (out / RUNS_DIR / run.name).exists():
                shutil.rmtree(out / RUNS_DIR / run.name)  # a failed run being retried, or one to redo
        if redone:
            hashes = {run.hash for run in runs if run.name in redone}
            kept = [row for row in read_jsonl(out / RESULTS_FILE) if row.get("hash") not in hashes]
            atomic_write_text(out / RESULTS_FILE, "".join(json.dumps(row) + "\n" for row in kept))
        _reconcile(out, runs)
        log = EventLog(out / EVENTS_FILE)
        tail = _EventTail(log.path, callback)
        tail.skip_existing()
        log.emit(
            "study_start",
            study=spec.name,
            executor=executor,
            runs=len(runs),
            todo=len(todo),
            done=len(result.skipped),
            failed=len(result.failed),
        )
        if todo:
            _dispatch(spec, out, todo, runner, executor, max_parallel, result, tail, poll_seconds)
        tail.poll()
        _reconcile(out, runs)
        result.records = _ordered_records(out, runs)
        log.emit(
            "study_done",
            study=spec.name,
            done=len(result.finished) + len(result.skipped),
            failed=len(result.failed),
            runs=len(runs),
        )
        tail.poll()
    finally:
        lock.release()
    return result


def _plan(output_dir: str | os.PathLike) -> list[str] | None:
    marker = Path(output_dir) / STUDY_FILE
    return json.loads(marker.read_text()).get("plan") if marker.is_file() else None


def study_plan(output_dir: str | os.PathLike) -> set[str] | None:
    """The hashes of the runs that the last ``run_jobs`` call planned in a study folder (``study.json``'s plan), or
    ``None`` for a folder written before plans were recorded."""
    plan = _plan(output_dir)
    return None if plan is None else set(plan)


def planned_records(output_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """A study folder's finished records that belong to its current plan, and the names of those that do not.

    A record outside :func:`study_plan` ran with a config the study no longer resolves to (a preset's value or a
    method's default changed, and the next call planned the run anew under another hash): it stays in
    ``results.jsonl`` and ``runs/``, but mixing it into the means would average two presets. A folder without a
    recorded plan keeps every record.

    Returns:
        ``(records, stale)``: the plan's records in plan order (the job file's, whatever order the runs finished
        in; without a plan, in the order of each record's ``index``), and the stale runs' names.
    """
    records = read_jsonl(Path(output_dir) / RESULTS_FILE)
    plan = _plan(output_dir)
    if plan is None:
        return sorted(records, key=lambda r: r.get("index", 0)), []
    order = {run_hash: i for i, run_hash in enumerate(plan)}
    stale = [str(r.get("run", r.get("hash"))) for r in records if r.get("hash") not in order]
    return sorted((r for r in records if r.get("hash") in order), key=lambda r: order[r["hash"]]), stale


def _ordered_records(out: Path, runs: list[RunSpec]) -> list[dict[str, Any]]:
    order = {run.hash: run.index for run in runs}
    rows = [row for row in read_jsonl(out / RESULTS_FILE) if row.get("hash") in order]
    return sorted(rows, key=lambda row: order[row["hash"]])


def _threads(res: ResourcesSpec, slots: int) -> int:
    return res.torch_threads or max(1, (os.cpu_count() or 1) // slots)


def _dispatch(spec, out, todo, runner, executor, max_parallel, result, tail, poll_seconds) -> None:
    res = spec.resources
    gpus = _gpu_count() if executor == "local" and spec.device != "cpu" else 0
    slots = max_parallel or res.max_parallel or (gpus if gpus else 1)
    slots = min(slots, len(todo))
    threads = _threads(res, slots)
    if executor == "local":
        pool: Any = _LocalPool(slots, out, threads, spec.device)
    elif executor == "slurm":
        pool = _SubmititPool(slots, out, threads, res, spec.name)
    else:
        pool = _RayPool(out, threads, res)
    by_handle: dict[Any, RunSpec] = {}
    queue = list(todo)
    try:
        if executor == "slurm" and pool.array:
            by_handle = dict(zip(pool.submit_all(runner, queue), queue))
            queue = []
        while queue or by_handle:
            while queue and len(by_handle) < slots:
                run = queue.pop(0)
                by_handle[pool.submit(runner, run)] = run
            for handle, outcome in pool.wait(list(by_handle), poll_seconds):
                run = by_handle.pop(handle)
                if outcome.get("status") == "done":
                    append_result(out / RESULTS_FILE, outcome["record"])
                    result.finished.append(run.name)
                else:
                    error = outcome.get("error", "failed")
                    result.failed[run.name] = error
                    if not (out / RUNS_DIR / run.name / ERROR_FILE).exists():  # the worker died before writing it
                        EventLog(out / EVENTS_FILE).emit("run_failed", run=run.name, error=error)
                        folder = out / RUNS_DIR / run.name
                        folder.mkdir(parents=True, exist_ok=True)
                        atomic_write_json(folder / ERROR_FILE, {"run": run.name, "error": error})
            tail.poll()
    finally:
        pool.close()


class _EventTail:
    """Reads events other processes append to ``events.jsonl`` and passes each one to the callback."""

    def __init__(self, path: Path, callback: EventCallback | None):
        self.path, self.callback, self.offset = path, callback, 0

    def skip_existing(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def poll(self) -> None:
        if self.callback is None or not self.path.exists():
            return
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self.offset += end
        for line in data[:end].splitlines():
            try:
                self.callback(json.loads(line))
            except json.JSONDecodeError:
                continue


__all__ = [
    "EXECUTORS",
    "AttackSpec",
    "EvaluationsSpec",
    "EventLog",
    "ExecutorName",
    "MethodSpec",
    "ResourcesSpec",
    "RunContext",
    "RunSpec",
    "ScorecardSpec",
    "StudyResult",
    "StudySpec",
    "append_result",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_folder",
    "check_spec",
    "config_hash",
    "execute_run",
    "expand_runs",
    "grid_points",
    "load_spec",
    "method_label",
    "planned_records",
    "read_jsonl",
    "run_jobs",
    "run_status",
    "select_methods",
    "study_plan",
]
