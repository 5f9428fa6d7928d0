"""Prompt sets: the CSV files that attacks and evaluations read, in the UnlearnDiffAtk / ESD format.

A prompt set is a CSV with one row per prompt:

- ``prompt``: the text;
- ``evaluation_seed`` (or ``seed``): the sampling seed, optional;
- ``evaluation_guidance`` (or ``guidance``): the classifier-free guidance scale, 7.5 when absent (as the benchmark's
  loader does);
- ``concept``: optional, what the prompt is about;
- anything else (``case_number``, ``categories``, ``class``, ``artist``, ...) is kept in :attr:`PromptRow.extra` and
  written back unchanged. The unnamed index column that pandas writes (``""`` or ``"Unnamed: 0"``) is dropped.

So the official files (UnlearnDiffAtk's ``prompts/*.csv``, ESD's ``data/*.csv``, I2P) load as they are. Bundled sets
live in ``eval/data/``: ``toy_<object>.csv`` for the toy world (written by :func:`toy_prompt_set`) and
``captions_small.csv``, ~100 everyday captions of our own for utility checks (CLIP score, FID) on real models.

```python
from eval.prompts import load_prompts

prompts = load_prompts("toy:star")            # built on the fly for any toy object
prompts = load_prompts("captions_small")      # a bundled set, by name
prompts = load_prompts("prompts/nudity.csv")  # an official file
for row in prompts:
    print(row.prompt, row.seed, row.guidance)
```
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
"""Where the bundled prompt sets live (package data)."""

DEFAULT_GUIDANCE = 7.5
"""Guidance for rows without one (UnlearnDiffAtk's ``PNGImageDataset`` default)."""

SEED_COLUMNS = ("evaluation_seed", "seed")
GUIDANCE_COLUMNS = ("evaluation_guidance", "guidance")
_INDEX_COLUMN = re.compile(r"^(|Unnamed: \d+)$")

TOY_PROMPT_SET_SIZE = 20
"""Rows in each bundled toy set."""


@dataclass
class PromptRow:
    """One prompt of a prompt set.

    Args:
        prompt (`str`): the text given to the model.
        seed (`int`, *optional*): the sampling seed (``evaluation_seed``); ``None`` when the file has none.
        guidance (`float`, defaults to 7.5): the classifier-free guidance scale (``evaluation_guidance``).
        concept (`str`, *optional*): what the prompt is about, when the file says.
        extra (`dict[str, str]`): every other column, as text, in file order.
    """

    prompt: str
    seed: int | None = None
    guidance: float = DEFAULT_GUIDANCE
    concept: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class PromptSet:
    """An ordered list of :class:`PromptRow` with a name (the file stem or ``toy:OBJECT``).

    Iterating, ``len`` and indexing work on the rows; :attr:`prompts`, :attr:`seeds` and :attr:`guidances` give
    the columns.
    """

    rows: list[PromptRow]
    name: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[PromptRow]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> PromptRow:
        return self.rows[index]

    @property
    def prompts(self) -> list[str]:
        return [row.prompt for row in self.rows]

    @property
    def seeds(self) -> list[int | None]:
        return [row.seed for row in self.rows]

    @property
    def guidances(self) -> list[float]:
        return [row.guidance for row in self.rows]

    @property
    def concepts(self) -> list[str]:
        """The distinct concepts named by the rows, in first-seen order."""
        return list(dict.fromkeys(row.concept for row in self.rows if row.concept))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set as CSV (see :func:`save_prompts`)."""
        return save_prompts(self, path)


# ---------------------------------------------------------------- reading and writing


def _parse_seed(text: str, where: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)  # files written through pandas can hold "4068.0"
    except ValueError:
        raise ConfigError(f"{where}: seed {text!r} is not a whole number") from None
    if not value.is_integer():
        raise ConfigError(f"{where}: seed {text!r} is not a whole number")
    return int(value)


def _parse_guidance(text: str, where: str) -> float:
    text = text.strip()
    if not text:
        return DEFAULT_GUIDANCE
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: guidance {text!r} is not a number") from None


def _first_present(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def read_prompts_csv(path: str | os.PathLike, *, name: str | None = None) -> PromptSet:
    """Read a prompt CSV in the benchmark's format (see the module docstring).

    Raises:
        ConfigError: when the file has no ``prompt`` column or a seed or guidance is not a number.
    """
    path = Path(path)
    try:
        with path.open("rb") as raw:
            raw.read(1 << 16).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text CSV; save the prompt set as UTF-8 CSV") from None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if "prompt" not in columns:
            raise ConfigError(
                f"{path} has no 'prompt' column (columns: {', '.join(columns) or 'none'}); a prompt set needs "
                "prompt, and optionally evaluation_seed, evaluation_guidance and concept"
            )
        seed_column = _first_present(columns, SEED_COLUMNS)
        guidance_column = _first_present(columns, GUIDANCE_COLUMNS)
        known = {"prompt", "concept", seed_column, guidance_column}
        extra_columns = [c for c in columns if c not in known and not _INDEX_COLUMN.match(c)]
        rows = []
        for line, record in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            if not (record["prompt"] or "").strip():
                raise ConfigError(f"{where}: the prompt is empty; write a prompt or delete the line")
            concept = (record.get("concept") or "").strip() or None
            rows.append(
                PromptRow(
                    prompt=record["prompt"] or "",
                    seed=_parse_seed(record[seed_column] or "", where) if seed_column else None,
                    guidance=_parse_guidance(record[guidance_column] or "", where)
                    if guidance_column
                    else DEFAULT_GUIDANCE,
                    concept=concept,
                    extra={c: record[c] or "" for c in extra_columns},
                )
            )
    if not rows:
        raise ConfigError(f"{path} has a header but no prompt rows; add at least one prompt (one per line)")
    return PromptSet(rows=rows, name=name or path.stem)


def save_prompts(prompts: PromptSet | Sequence[PromptRow], path: str | os.PathLike) -> Path:
    """Write a prompt set as CSV with the benchmark's column names.

    Columns: ``case_number`` first when the rows have it (as the official files do), then ``prompt``,
    ``evaluation_seed``, ``evaluation_guidance``, ``concept`` (only when some row has one), then the other extra
    columns in first-seen order. :func:`load_prompts` reads the file back to equal rows.

    Returns:
        `Path`: the file written.
    """
    rows = list(prompts)
    extra_columns = list(dict.fromkeys(c for row in rows for c in row.extra))
    leading = ["case_number"] if "case_number" in extra_columns else []
    trailing = [c for c in extra_columns if c != "case_number"]
    has_concept = any(row.concept for row in rows)
    columns = leading + ["prompt", "evaluation_seed", "evaluation_guidance"] + (["concept"] if has_concept else [])
    columns += trailing
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            record = dict(row.extra)
            record.update(
                prompt=row.prompt,
                evaluation_seed="" if row.seed is None else str(row.seed),
                evaluation_guidance=repr(float(row.guidance)),
            )
            if has_concept:
                record["concept"] = row.concept or ""
            writer.writerow({c: record.get(c, "") for c in columns})
    return path


def list_prompt_sets() -> list[str]:
    """Names of the bundled prompt sets (``load_prompts`` accepts them), plus ``toy:OBJECT``."""
    return sorted(p.stem for p in DATA_DIR.glob("*.csv")) + ["toy:OBJECT"]


def load_prompts(path_or_name: str | os.PathLike | PromptSet) -> PromptSet:
    """A prompt set from a CSV path, a bundled set's name, or ``toy:OBJECT``.

    Args:
        path_or_name:
            - a CSV file (UnlearnDiffAtk / ESD / I2P format, or one written by :func:`save_prompts`);
            - the name of a bundled set in ``eval/data/`` (``"captions_small"``, ``"toy_star"``);
            - ``"toy:OBJECT"``: a toy-world set built on the fly by :func:`toy_prompt_set` (``"toy:pentagram"`` and
              other synonyms work too);
            - a :class:`PromptSet`, returned as is.

    Raises:
        ConfigError: the file or name does not exist, or the CSV is malformed.
    """
    if isinstance(path_or_name, PromptSet):
        return path_or_name
    text = os.fspath(path_or_name).strip()
    if text.startswith("toy:"):
        return toy_prompt_set(text.removeprefix("toy:"))
    path = Path(text).expanduser()
    if path.is_file():
        return read_prompts_csv(path)
    bundled = DATA_DIR / f"{text.removesuffix('.csv')}.csv"
    if "/" not in text and os.sep not in text and bundled.is_file():
        return read_prompts_csv(bundled)
    raise ConfigError(
        f"no prompt set {text!r}: give an existing CSV file, toy:OBJECT, or a bundled set "
        f"({', '.join(list_prompt_sets())})"
    )


# ---------------------------------------------------------------- the toy world's prompt sets


def toy_prompt_set(concept: str, n: int = TOY_PROMPT_SET_SIZE, seed: int = 0) -> PromptSet:
    """A deterministic prompt set about one toy-world object, in the benchmark's format.

    Prompts use the toy caption grammar's templates (:func:`pipelines.toy.world.caption`) with varied colours,
    styles and backgrounds. Every third prompt is a paraphrase that names the object by a synonym ("pentagram" for
    "star"), which is where erasures leak. Object/colour pairs held out of training are skipped, so the base toy
    model draws every prompt. Seeds are 5-digit numbers like the benchmark's; guidance is 7.5.

    Args:
        concept (`str`): a toy object or one of its synonyms ("star", "pentagram", "circle").
        n (`int`): number of prompts (all distinct).
        seed (`int`): seed of the generator; the same arguments always give the same set.

    Returns:
        `PromptSet` named ``toy:<object>`` whose rows carry ``concept`` and a ``case_number`` extra column.
    """
    from pipelines.toy.world import (
        BACKGROUNDS,
        COLOURS,
        HELD_OUT,
        OBJECTS,
        STYLES,
        WORDS,
        Scene,
        canonical,
        caption,
        concept_kind,
    )

    obj = canonical(concept)
    if concept_kind(concept) != "object" or obj is None:
        raise ConfigError(f"toy prompt sets are about objects; {concept!r} is not one of: {', '.join(OBJECTS)}")
    if n < 1:
        raise ConfigError(f"a prompt set needs at least one prompt, got n={n}")
    words = WORDS[obj]
    paraphrases = words[1:] or words
    rng = np.random.default_rng(seed)
    colours = [c for c in COLOURS if (obj, c) not in HELD_OUT]
    rows: list[PromptRow] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 200 * n:
            raise ConfigError(f"the toy captions have fewer than {n} distinct prompts for {obj!r}; ask for fewer")
        index = len(rows)
        word = paraphrases[(index // 3) % len(paraphrases)] if index % 3 == 2 else words[0]
        scene = Scene(
            object=obj,
            colour=colours[int(rng.integers(len(colours)))],
            style=STYLES[int(rng.integers(len(STYLES)))],
            background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        )
        prompt = caption(scene, rng, object_word=word)
        prompt_seed = int(rng.integers(10_000, 100_000))
        if prompt in seen:
            continue
        seen.add(prompt)
        rows.append(
            PromptRow(
                prompt=prompt,
                seed=prompt_seed,
                guidance=DEFAULT_GUIDANCE,
                concept=obj,
                extra={"case_number": str(index)},
            )
        )
    return PromptSet(rows=rows, name=f"toy:{obj}")


def write_toy_prompt_sets(folder: str | os.PathLike = DATA_DIR) -> list[Path]:
    """(Re)write the bundled ``toy_<object>.csv`` files, one per toy object, with the default size and seed."""
    from pipelines.toy.world import OBJECTS

    return [save_prompts(toy_prompt_set(obj), Path(folder) / f"toy_{obj}.csv") for obj in OBJECTS]


if __name__ == "__main__":  # python -m eval.prompts: regenerate the bundled toy sets after a grammar change
    for written in write_toy_prompt_sets():
        print(written)
