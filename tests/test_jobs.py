"""Batch studies (``pipelines.jobs``, ``eval.study``, ``erasure-studio run`` / ``report``).

Most tests drive the engine with a test runner (``tests/jobs_doubles.py``) so that they are about the engine, not
about training speed: every executor, resuming, failures, and a study killed with SIGKILL mid-run. One test runs the
real runner (erase, attack, scorecard) on the toy model with tiny settings.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jobs_doubles
import pytest

from eval.study import build_leaderboard, run_study, validate_study, write_leaderboard
from pipelines.checks import load_yaml
from pipelines.errors import ConfigError
from pipelines.jobs import (
    RESULTS_FILE,
    check_output_folder,
    config_hash,
    expand_runs,
    grid_points,
    load_spec,
    read_jsonl,
    run_jobs,
    select_methods,
)
from ui.cli import main

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def spec_dict(**overrides) -> dict:
    """Two methods x two concepts x one seed: four runs."""
    spec = {
        "name": "engine-test",
        "models": ["toy"],
        "methods": [{"name": "esd", "preset": "toy"}, {"name": "salun", "preset": "toy"}],
        "concepts": ["star", "cross"],
        "seeds": [0],
        "resources": {"torch_threads": 1},
    }
    spec.update(overrides)
    return spec


def results(folder: Path) -> list[dict]:
    return read_jsonl(folder / RESULTS_FILE)


def numbers(rows: list[dict]) -> dict[str, dict]:
    return {row["hash"]: row["metrics"] for row in rows}


# ---------------------------------------------------------------- the job file


def test_the_grid_expands_into_a_product_and_runs_are_named_by_their_config():
    assert grid_points({"learning_rate": [1e-5, 1e-4], "max_train_steps": [1, 2, 3], "x": 1}) == [
        {"learning_rate": lr, "max_train_steps": s, "x": 1} for lr in (1e-5, 1e-4) for s in (1, 2, 3)
    ]
    spec = load_spec(spec_dict(methods=[{"name": "esd", "config": {"learning_rate": [1e-5, 1e-4]}}], seeds=[0, 1]))
    runs = expand_runs(spec)
    assert len(runs) == 2 * 2 * 2  # grid x concepts x seeds
    assert len({r.name for r in runs}) == len(runs)
    assert runs[0].name == f"esd-star-seed0-learning-rate1e-05-{runs[0].hash}"
    assert runs == expand_runs(load_spec(spec_dict(methods=spec.to_dict()["methods"], seeds=[0, 1])))
    # The hash covers the resolved config: another default (a resolver's answer) is another run.
    other = expand_runs(spec, lambda run: {**run.config, "negative_guidance": 2.0})
    assert {r.hash for r in other}.isdisjoint({r.hash for r in runs})
    assert config_hash({"b": 1, "a": [1, 2]}) == config_hash({"a": [1, 2], "b": 1})


def test_real_runs_hash_their_full_config_and_resources_are_not_part_of_it():
    spec, runs = validate_study(spec_dict())
    assert runs[0].config["max_train_steps"] == 100  # ESD's toy preset, resolved from the registry
    assert runs[0].config["concept"] == "star"
    _, again = validate_study(spec_dict(resources={"torch_threads": 2, "max_parallel": 2}))
    assert [r.hash for r in again] == [r.hash for r in runs]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    return path


GOOD = """
name: bad-file-test
models: [toy]
methods:
  - {name: esd, preset: toy}
concepts: [star]
seeds: [0]
"""


@pytest.mark.parametrize(
    "edit, extra, expected",
    [
        (("name: esd", "name: esdd"), [], "unknown method 'esdd'; did you mean 'esd'?"),
        (("preset: toy}", "preset: toy, config: {learning_rat: 0.1}}"), [], "did you mean 'learning_rate'?"),
        (("preset: toy}", "preset: toy, config: {max_train_steps: []}}"), [], "the config grid is empty"),
        (("concepts: [star]", "concepts: []"), [], "concepts list is empty"),
        (("seeds: [0]", "seeds: [0]"), ["--executor", "kubernetes"], "unknown executor 'kubernetes'"),
        (("models: [toy]", "models: [/no/such/model.safetensors]"), [], "model path /no/such/model.safetensors"),
        (("concepts: [star]", "concepts: [star"), [], "is not valid YAML"),
    ],
)
def test_a_bad_job_file_is_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, edit, extra, expected):
    jobs = _write(tmp_path, GOOD.replace(*edit))
    out = tmp_path / "study"
    assert main(["run", str(jobs), "--output_dir", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_an_output_folder_holding_another_study_is_refused(tmp_path, capsys):
    out = tmp_path / "study"
    run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=1)
    jobs = _write(tmp_path, GOOD)
    assert main(["run", str(jobs), "--output_dir", str(out), "--dry_run"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a different study ('engine-test'" in err and len(err.splitlines()) == 1
    # The same study under other resources is the same study: resuming it is fine.
    check_output_folder(out, load_spec(spec_dict(resources={"max_parallel": 2})))
    with pytest.raises(ConfigError, match="different study"):
        check_output_folder(out, load_spec(spec_dict(seeds=[0, 1])))


def test_every_shipped_job_file_passes_the_dry_run(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "stylegan2.pt"
    weights.write_bytes(b"")
    for name in ("UNLEARNDIFFATK_PROMPTS", "STYLE_CLASSIFIER", "INCEPTION_WEIGHTS", "SFD_INITIAL_GENERATOR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("STYLEGAN2_CHECKPOINT", str(weights))
    files = sorted((ROOT / "configs" / "jobs").glob("*.yaml"))
    assert {f.stem for f in files} >= {
        "toy-quick",
        "advunlearn-nudity",
        "advunlearn-style",
        "advunlearn-object",
        "salun-nudity",
        "doco-vangogh",
        "sfd-nudity",
        "atu",
    }
    for path in files:
        out = tmp_path / f"dry-{path.stem}"
        assert main(["run", str(path), "--output_dir", str(out), "--dry_run"]) == 0, capsys.readouterr().err
        assert "pending" in capsys.readouterr().out
        assert not out.exists()  # a dry run writes nothing
    monkeypatch.delenv("STYLE_CLASSIFIER")
    assert main(["run", str(ROOT / "configs/jobs/advunlearn-style.yaml"), "--output_dir", str(tmp_path / "x")]) == 2
    assert "${STYLE_CLASSIFIER}, which is not set" in capsys.readouterr().err


def test_the_readme_job_example_runs_and_reads_exponents_as_numbers(tmp_path, capsys):
    # PyYAML alone reads "2e-5" (YAML 1.1, no dot) as a string, which the README's own example writes.
    readme = (ROOT / "README.md").read_text()
    example = readme.split("### The job file", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    job = tmp_path / "example.yaml"
    job.write_text(example)
    assert main(["run", str(job), "--output_dir", str(tmp_path / "out"), "--dry_run"]) == 0, capsys.readouterr().err
    assert "learning-rate2e-05" in capsys.readouterr().out
    assert load_yaml("a: 6e-5\nb: 1e3\nc: '6e-5'\nd: 3\ne: 1.5") == {
        "a": 6e-5,
        "b": 1000.0,
        "c": "6e-5",
        "d": 3,
        "e": 1.5,
    }


# ---------------------------------------------------------------- running, resuming, failing


def test_local_executor_with_two_workers_runs_resumes_and_logs(tmp_path):
    out = tmp_path / "study"
    events: list[dict] = []
    result = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=2, callback=events.append)
    assert len(result.finished) == 4 and not result.failed
    rows = results(out)
    assert [r["index"] for r in result.records] == [0, 1, 2, 3]
    assert len(rows) == 4 and len({r["hash"] for r in rows}) == 4
    for run in result.runs:
        folder = out / "runs" / run.name
        done = json.loads((folder / "done.json").read_text())
        assert done["hash"] == run.hash and (folder / "artifact" / "weights.txt").read_text() == run.hash
        assert done["threads"] == 1 and done["peak_memory_mb"] > 0 and done["hardware"]["torch_threads"] == 1
    assert not list((out / "runs" / ".partial").iterdir())
    # Two workers really ran at once: two distinct worker processes.
    log = read_jsonl(out / "events.jsonl")
    assert len({e["pid"] for e in log if e["event"] == "run_start"}) >= 2
    kinds = [e["event"] for e in events]
    assert kinds[0] == "study_start" and kinds[-1] == "study_done"
    assert kinds.count("run_done") == 4 and "run_step" in kinds
    # Re-running skips every finished run and adds nothing.
    again = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=2)
    assert again.finished == [] and len(again.skipped) == 4
    assert results(out) == rows


def test_a_failing_run_is_one_line_does_not_stop_the_others_and_can_be_retried(tmp_path, monkeypatch):
    out = tmp_path / "study"
    monkeypatch.setenv("JOBS_FAIL_CONCEPT", "cross")
    result = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=2)
    assert len(result.finished) == 2 and len(result.failed) == 2
    assert set(result.failed.values()) == {"ValueError: cannot erase 'cross' here"}
    assert {r["concept"] for r in results(out)} == {"star"}
    assert main(["report", str(out)]) == 0
    assert "## Failed runs" in (out / "leaderboard.md").read_text()
    # Without --retry_failed they stay failed; with it they are redone.
    monkeypatch.delenv("JOBS_FAIL_CONCEPT")
    assert len(run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=2).failed) == 2
    retried = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=2, retry_failed=True)
    assert len(retried.finished) == 2 and not retried.failed and len(results(out)) == 4


def _lr(value: float):
    """A resolver that gives every run the learning rate ``value`` (a preset's value, changed between calls)."""
    return lambda run: {**run.config, "learning_rate": value}


def test_leaderboard_rows_follow_the_job_file_whatever_order_the_runs_finished_in(tmp_path):
    out = tmp_path / "study"
    run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=1)
    in_order = [(row["method"], row["concept"]) for row in write_leaderboard(out).rows]
    assert in_order == [(m, c) for m in ("esd (toy)", "salun (toy)") for c in ("star", "cross")]
    # SalUn's runs as a study cut to SalUn numbers them (indices 0 and 1), finished after ESD's: the same runs by
    # hash, moved in from a cut folder, still sit where the job file puts them.
    records = results(out)
    for record in records:
        record["index"] -= 2 if record["method"] == "salun" else 0
    (out / RESULTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in reversed(records)))
    assert [(row["method"], row["concept"]) for row in write_leaderboard(out).rows] == in_order


def test_a_run_whose_config_changed_is_left_out_of_the_leaderboard_not_averaged_in(tmp_path, capsys):
    out = tmp_path / "study"
    spec = spec_dict(methods=[{"name": "esd", "preset": "toy"}], concepts=["star"], seeds=[0, 1])
    first = run_jobs(spec, out, runner=jobs_doubles.numbers_runner, resolve=_lr(1e-5))
    assert len(write_leaderboard(out).rows) == 1 and write_leaderboard(out).rows[0]["runs"] == 2
    # The preset's value changes: both points run again under new names, and the old records stay on disk.
    again = run_jobs(spec, out, runner=jobs_doubles.numbers_runner, resolve=_lr(2e-5))
    assert len(again.finished) == 2 and not again.skipped and len(results(out)) == 4
    board = write_leaderboard(out)
    assert board.rows[0]["runs"] == 2 and board.rows[0]["seeds"] == [0, 1]
    assert sorted(board.stale) == sorted(run.name for run in first.runs)
    assert "## Left out" in (out / "leaderboard.md").read_text()
    assert sorted(json.loads((out / "leaderboard.json").read_text())["stale"]) == sorted(board.stale)
    assert main(["report", str(out)]) == 0
    assert "2 left out" in capsys.readouterr().out


def _leaderboard_numbers(folder: Path) -> list[dict]:
    """The leaderboard CSV without time and memory (they are measured, not computed)."""
    rows = list(csv.DictReader(io.StringIO((folder / "leaderboard.csv").read_text())))
    return [{k: v for k, v in row.items() if not k.startswith(("time", "memory"))} for row in rows]


def test_redo_runs_finished_runs_again_without_duplicating_their_lines(tmp_path):
    out = tmp_path / "study"
    first = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=1)
    target = first.runs[1].name
    pattern = target.rsplit("-", 1)[0] + "-*"  # by shell pattern: the name without its hash
    again = run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, max_parallel=1, redo=[pattern])
    assert again.finished == [target] and len(again.skipped) == len(first.runs) - 1
    rows = results(out)
    assert len(rows) == len(first.runs) and len({r["hash"] for r in rows}) == len(first.runs)
    starts = [e["run"] for e in read_jsonl(out / "events.jsonl") if e["event"] == "run_start"]
    assert starts.count(target) == 2 and all(starts.count(r.name) == 1 for r in first.runs if r.name != target)
    with pytest.raises(ConfigError, match="matches no run"):
        run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, redo=["nothing-*"])


def test_a_study_cut_to_some_methods_is_its_own_folder_and_keeps_the_run_names(tmp_path):
    spec, runs = validate_study(spec_dict())
    cut = select_methods(spec, ["salun (toy)"])  # by leaderboard label; a method name selects the same
    assert cut == select_methods(spec, ["salun"]) and [m.name for m in cut.methods] == ["salun"]
    _, cut_runs = validate_study(cut)
    assert [r.name for r in cut_runs] == [r.name for r in runs if r.method == "salun"]
    # Another thread count in a second folder measures the same runs again; the full study's folder refuses the cut.
    out = tmp_path / "cut"
    done = run_study(cut, out, runner=jobs_doubles.numbers_runner, max_parallel=1)
    assert sorted(r["run"] for r in results(out)) == sorted(r.name for r in cut_runs) == sorted(done.finished)
    with pytest.raises(ConfigError, match="holds a different study"):
        check_output_folder(out, spec)
    assert select_methods(spec, ["salun", "esd"]).methods == spec.methods  # the job file's order
    with pytest.raises(ConfigError, match="did you mean 'salun'"):
        select_methods(spec, ["salunn"])


def test_a_study_killed_with_sigkill_mid_run_resumes_without_losing_or_duplicating(tmp_path):
    out = tmp_path / "killed"
    stall = tmp_path / "stall"
    stall.write_text("cross")  # runs of 'cross' hang until the study is killed
    spec = spec_dict(methods=[{"name": "esd", "preset": "toy"}], concepts=["star", "cross", "heart"])
    script = (
        "import json, sys, jobs_doubles; from pipelines.jobs import run_jobs; "
        f"run_jobs(json.loads(sys.argv[1]), {str(out)!r}, runner=jobs_doubles.numbers_runner, max_parallel=1)"
    )
    env = {**os.environ, "JOBS_STALL_FILE": str(stall), "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    process = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(spec)], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            log = read_jsonl(out / "events.jsonl")
            started = [e["run"] for e in log if e["event"] == "run_start"]
            if any("cross" in name for name in started) and (out / "runs" / ".partial").exists():
                partial = list((out / "runs" / ".partial").iterdir())
                if partial and (partial[0] / "artifact").exists():
                    break
            assert process.poll() is None, "the study ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("the study never reached the 'cross' run")
        os.killpg(process.pid, signal.SIGKILL)  # the coordinator and its worker, mid-run
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    finished = {p.name: (p / "done.json").read_text() for p in (out / "runs").iterdir() if (p / "done.json").exists()}
    assert len(finished) == 1 and all("star" in name for name in finished)  # star done, cross killed, heart not begun
    lines_before = (out / RESULTS_FILE).read_text().splitlines()
    assert len(lines_before) == 1
    # The killed run left only its half-written folder under runs/.partial, no marker, no run folder.
    assert not [n for n in os.listdir(out / "runs") if "cross" in n]
    assert [p.name for p in (out / "runs" / ".partial").iterdir() if "cross" in p.name]

    stall.unlink()
    resumed = run_jobs(spec, out, runner=jobs_doubles.numbers_runner, max_parallel=1)
    assert len(resumed.skipped) == 1 and len(resumed.finished) == 2
    for name, text in finished.items():  # the finished run is kept as it was
        assert (out / "runs" / name / "done.json").read_text() == text
    lines = (out / RESULTS_FILE).read_text().splitlines()
    assert lines[0] == lines_before[0] and len(lines) == 3 and len({json.loads(x)["hash"] for x in lines}) == 3
    assert not list((out / "runs" / ".partial").iterdir())
    write_leaderboard(out)

    clean = tmp_path / "clean"
    run_jobs(spec, clean, runner=jobs_doubles.numbers_runner, max_parallel=1)
    write_leaderboard(clean)
    assert sorted(os.listdir(clean / "runs")) == sorted(os.listdir(out / "runs"))
    assert _leaderboard_numbers(out) == _leaderboard_numbers(clean)


# ---------------------------------------------------------------- every executor, the same runs


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "study"
    run_jobs(spec_dict(), out, runner=jobs_doubles.numbers_runner, executor="local", max_parallel=2)
    return results(out)


def test_slurm_executor_through_submitit_local_gives_the_same_runs(tmp_path, local_study):
    pytest.importorskip("submitit")
    out = tmp_path / "study"
    spec = spec_dict(resources={"torch_threads": 1, "slurm_cluster": "local", "slurm_time_min": 5})
    result = run_jobs(spec, out, runner=jobs_doubles.numbers_runner, executor="slurm", max_parallel=2)
    assert len(result.finished) == 4 and not result.failed
    assert (out / "slurm").is_dir()  # submitit's job folders: pickled calls, logs
    assert numbers(results(out)) == numbers(local_study)


def test_ray_executor_on_a_local_two_cpu_cluster_gives_the_same_runs(tmp_path, local_study):
    pytest.importorskip("ray")
    out = tmp_path / "study"
    spec = spec_dict(resources={"torch_threads": 1, "ray_num_cpus": 2, "gpus_per_run": 0})
    result = run_jobs(spec, out, runner=jobs_doubles.numbers_runner, executor="ray")
    assert len(result.finished) == 4 and not result.failed, result.failed
    assert numbers(results(out)) == numbers(local_study)
    starts = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "run_start"]
    assert len({e["pid"] for e in starts}) == 4  # a fresh worker per task (max_calls=1)


def test_a_missing_engine_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    spec = spec_dict(resources={"slurm_cluster": "local"})
    with pytest.raises(ImportError, match=r"pip install 'erasure-studio\[jobs\]'"):
        run_jobs(spec, tmp_path / "study", runner=jobs_doubles.numbers_runner, executor="slurm")


# ---------------------------------------------------------------- the leaderboard


def test_the_leaderboard_has_the_public_columns_mean_and_spread_and_backends(tmp_path):
    out = tmp_path / "study"
    run_jobs(spec_dict(seeds=[0, 1]), out, runner=jobs_doubles.numbers_runner, max_parallel=2)
    assert main(["report", str(out)]) == 0
    text = (out / "leaderboard.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header == (
        "| method | concept | n | forget | paraphrase | retain shift | FID | CLIP | UA | IRA | CRA | pre-ASR | ASR | "
        "erase time | time | memory |"
    )
    assert "esd (toy) | star | 2 |" in text and " ± " in text
    assert "- **FID**: test double features" in text and "process peak RSS" in text
    rows = list(csv.DictReader(io.StringIO((out / "leaderboard.csv").read_text())))
    assert len(rows) == 4 and rows[0]["seeds"] == "0 1"
    asr = [
        r["ASR"] for r in results(out) if r["label"] == "esd (toy)" and r["concept"] == "star" for r in [r["metrics"]]
    ]
    assert float(rows[0]["ASR"]) == pytest.approx(sum(asr) / 2, rel=1e-5)
    assert float(rows[0]["ASR std"]) > 0
    board = build_leaderboard(results(out))
    assert board.rows[0]["CRA"] is None  # not measured stays '–', never a zero
    for name in ("forget_vs_retain.png", "asr.png"):
        assert (out / name).stat().st_size > 1000


# ---------------------------------------------------------------- the real runner, tiny


def test_the_real_runner_erases_attacks_and_scores_on_the_toy_model(tmp_path):
    spec = {
        "name": "tiny-real",
        "models": ["toy"],
        "methods": [{"name": "esd", "preset": "toy", "config": {"max_train_steps": 2, "num_inference_steps": 2}}],
        "concepts": ["star"],
        "seeds": [0],
        "evaluations": {
            "attack": {
                "limit": 1,
                "config": {
                    "iterations_per_timestep": 1,
                    "num_timesteps": 2,
                    "timestep_batch": 2,
                    "check_every": 1,
                    "num_inference_steps": 2,
                },
            },
            "scorecard": {"config": {"seeds": 1, "num_inference_steps": 2, "clip": "none"}},
        },
        "resources": {"torch_threads": 1},
    }
    out = tmp_path / "study"
    result = run_study(spec, out, max_parallel=1)
    assert not result.failed, result.failed
    (row,) = results(out)
    assert (out / row["artifact"] / "erasure.json").is_file()
    assert 0 <= row["metrics"]["pre-ASR"] <= row["metrics"]["ASR"] <= 1
    assert row["metrics"]["UA"] is not None and row["metrics"]["FID"] is not None
    assert "judge" in row["backends"]["UA"] or "images" in row["backends"]["UA"]
    # The base model's samples and the attack's targets went into the study's shared cache.
    assert len(list((out / "cache" / "images").rglob("*.png"))) > 48
    assert "| esd (toy) | star | 1 |" in (out / "leaderboard.md").read_text()


LEADERBOARD_JOB = Path(__file__).resolve().parents[1] / "configs" / "jobs" / "toy-leaderboard.yaml"


def test_the_toy_leaderboard_job_plans_every_method_concept_and_seed(tmp_path):
    result = run_study(LEADERBOARD_JOB, tmp_path / "study", dry_run=True)
    planned = [(r.method, r.concept, r.seed) for r in result.runs]
    assert sorted({m for m, _, _ in planned}) == ["advunlearn", "doco", "esd", "salun", "sfd"]
    assert len(planned) == 5 * 2 * 3 and {c for _, c, _ in planned} == {"star", "heart"}


def test_a_slice_of_the_toy_leaderboard_writes_every_column(tmp_path):
    """One method, one concept, one seed of the shipped leaderboard job, its schedules shortened to CI's budget: the
    leaderboard files carry every column, and each column the run measures has a value."""
    import yaml

    from eval.study import EXTRA_COLUMNS, LEADERBOARD_COLUMNS, TABLE_COLUMNS

    spec = yaml.safe_load(LEADERBOARD_JOB.read_text())
    spec["methods"] = [{**spec["methods"][0], "config": {"max_train_steps": 3}}]
    spec["concepts"], spec["seeds"] = ["star"], [0]
    attack = spec["evaluations"]["attack"]
    attack["limit"] = 2
    attack["config"].update(iterations_per_timestep=1, num_timesteps=2, num_inference_steps=2)
    spec["evaluations"]["scorecard"]["config"].update(seeds=1, num_inference_steps=2)
    spec["resources"] = {"torch_threads": 1}
    out = tmp_path / "study"
    result = run_study(spec, out, max_parallel=1)
    assert not result.failed, result.failed
    markdown = (out / "leaderboard.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| method"))
    assert header == "| " + " | ".join(["method", "concept", "n", *TABLE_COLUMNS]) + " |"
    row = next(line for line in markdown.splitlines() if line.startswith("| esd"))
    assert "–" not in row, row  # every column measured, the attack's included
    columns = next(csv.reader(io.StringIO((out / "leaderboard.csv").read_text())))
    for column in (*LEADERBOARD_COLUMNS, *EXTRA_COLUMNS):
        assert column in columns and f"{column} std" in columns
    assert (out / "forget_vs_retain.png").is_file() and (out / "asr.png").is_file()
    payload = json.loads((out / "leaderboard.json").read_text())
    assert payload["rows"][0]["ASR"]["mean"] is not None
    # ESD alone: the attack claim is checked on its row, the comparisons with ESD have nothing to compare.
    verdicts = {c["paper"]: c["verdict"] for c in payload["claims"]}
    assert verdicts["UnlearnDiffAtk"] != "not measured" and verdicts["AdvUnlearn"] == "not measured"


def test_a_one_step_slice_of_the_toy_leaderboard_is_scored_without_the_attack(tmp_path):
    """SFD's row of the shipped leaderboard job (two SFD steps): the scorecard's columns are filled, the attack's
    are not, and the backends say why (UnlearnDiffAtk optimises a denoising loss a one-step generator lacks)."""
    import yaml

    spec = yaml.safe_load(LEADERBOARD_JOB.read_text())
    spec["methods"] = [{**next(m for m in spec["methods"] if m["name"] == "sfd"), "config": {"max_train_steps": 2}}]
    spec["concepts"], spec["seeds"] = ["star"], [0]
    spec["evaluations"]["attack"]["limit"] = 1
    spec["evaluations"]["scorecard"]["config"].update(seeds=1)
    spec["resources"] = {"torch_threads": 1}
    out = tmp_path / "study"
    result = run_study(spec, out, max_parallel=1)
    assert not result.failed, result.failed
    payload = json.loads((out / "leaderboard.json").read_text())
    (row,) = payload["rows"]
    assert row["method"].startswith("sfd") and row["ASR"] is None and row["pre-ASR"] is None
    for column in ("forget", "retain shift", "FID", "CLIP", "erase time"):
        assert row[column] is not None and row[column]["mean"] is not None, column
    assert any("does not apply" in text for text in payload["backends"]["ASR"])
    # The multistep base samples with its own schedule, not the one-step generator's single step (which drew noise):
    # the toy SD draws the erased concept, and the retain shift is measured against real base samples.
    (record,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert record["metrics"]["base forget"] >= 0.5, record["metrics"]


def test_a_gan_slice_of_the_leaderboard_is_scored_by_the_gan_scorecard(tmp_path):
    """Text-to-Unlearn's row of the GAN block (four steps, 64 shared latents): PUL, forget, retain shift, FD and γ
    are filled, the GAN table and the Text-to-Unlearn claim read them."""
    import yaml

    spec = yaml.safe_load(LEADERBOARD_JOB.with_name("toy-leaderboard-gan.yaml").read_text())
    overrides = {"max_train_steps": 4, "batch_size": 2, "direction_samples": 4, "eval_samples": 0}
    spec["methods"] = [{**next(m for m in spec["methods"] if m["name"] == "text_to_unlearn"), "config": overrides}]
    spec["concepts"], spec["seeds"] = ["circle"], [0]
    spec["evaluations"]["scorecard"]["config"]["gan_samples"] = 64
    spec["evaluations"]["attack"] = {"prompts": "toy:{concept}", "judge": "toy", "limit": 1}  # GANs: not applied
    spec["resources"] = {"torch_threads": 1}
    out = tmp_path / "study"
    result = run_study(spec, out, max_parallel=1)
    assert not result.failed, result.failed
    payload = json.loads((out / "leaderboard.json").read_text())
    (row,) = payload["rows"]
    for column in ("forget", "PUL", "retain shift", "FID", "gamma", "erase time"):
        assert row[column] is not None and row[column]["mean"] is not None, column
    assert row["ASR"] is None and any("does not apply to a GAN" in t for t in payload["backends"]["ASR"])
    assert any("toy-heldout" in t for t in payload["backends"]["PUL"])
    verdicts = {c["paper"]: c["verdict"] for c in payload["claims"]}
    assert verdicts["Text-to-Unlearn"] in ("holds", "does not hold")
    assert "### GAN methods" in (out / "leaderboard.md").read_text()
    assert (out / "runs").is_dir() and list((out / "runs").glob("*/scorecard/scorecard.json"))
