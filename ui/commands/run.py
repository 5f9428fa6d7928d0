"""``erasure-studio run JOBS.yaml --output_dir study/``: run a batch study, resumably, and write its leaderboard.

The job file (YAML or JSON, schema: ``pipelines.jobs.StudySpec``) lists models, methods with their config grids,
concepts, seeds and the evaluations chained after each erasure. The whole file is checked before anything runs
(``eval.study.validate_study``); bad input is one line and exit status 2. Re-running the command skips finished runs
and redoes a run that was killed half-way; ``--retry_failed`` redoes failed ones. ``--methods doco sfd`` runs the
study cut to some of its methods (a folder of its own, whose runs keep their names and hashes). ``erasure-studio
report study/`` rewrites the leaderboard from ``results.jsonl``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from .common import PROG, Parser, UsageError


def run_parser() -> Parser:
    from pipelines.jobs import EXECUTORS

    parser = Parser(
        prog=f"{PROG} run",
        description="Run a batch study (methods x concepts x config grid x seeds, each erasure followed by its attack "
        "and scorecard) from a job file, resumably, and write leaderboard.md/.csv/.json and plots.",
    )
    parser.add_argument("jobs", help="The job file (YAML or JSON), e.g. configs/jobs/toy-quick.yaml.")
    parser.add_argument("--output_dir", required=True, help="The study folder (re-running it resumes).")
    parser.add_argument(
        "--executor",
        default="local",
        help=f"Where runs execute: {', '.join(EXECUTORS)} (local: a process per visible GPU or CPU slot; slurm: a "
        "submitit job array; ray: a task per run).",
    )
    parser.add_argument("--max_parallel", type=int, default=None, help="Runs at once (default: the job file's).")
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=None,
        help="torch threads per run (default: the job file's); runs keep their names, so a second study folder "
        "with another thread count measures whether results depend on it.",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="METHOD",
        help="Run only these methods of the job file (names, e.g. 'doco sfd', or leaderboard labels); the cut "
        "study is a folder of its own, and its runs keep the names and hashes they have in the full study.",
    )
    parser.add_argument("--dry_run", action="store_true", help="Check the job file and list the runs; run nothing.")
    parser.add_argument("--retry_failed", action="store_true", help="Redo runs that failed in an earlier call.")
    parser.add_argument(
        "--redo",
        nargs="+",
        default=[],
        metavar="RUN",
        help="Finished runs to run again, by name or shell pattern (e.g. 'esd-star-seed1-*'), say when a busy "
        "machine spoiled their timings.",
    )
    return parser


def cmd_run(argv: Sequence[str]) -> int:
    args = run_parser().parse_args(list(argv))
    from pipelines.jobs import EXECUTORS, run_status

    if args.executor not in EXECUTORS:
        raise UsageError(f"unknown executor {args.executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError(f"--max_parallel must be at least 1, got {args.max_parallel}")
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UsageError(f"--torch_threads must be at least 1, got {args.torch_threads}")
    from eval.study import run_study, validate_study
    from pipelines.jobs import check_output_folder, load_spec, select_methods

    spec = load_spec(args.jobs)
    if args.methods:
        spec = select_methods(spec, args.methods)  # before validating: only the kept methods' grids are resolved
    spec, runs = validate_study(spec)
    if args.torch_threads is not None:
        import dataclasses

        resources = dataclasses.replace(spec.resources, torch_threads=args.torch_threads)
        spec = dataclasses.replace(spec, resources=resources)
    check_output_folder(args.output_dir, spec)
    if args.dry_run:
        print(f"study {spec.name!r}: {len(runs)} runs in {args.output_dir} (dry run: nothing is run)")
        for run in runs:
            print(f"  {run_status(args.output_dir, run):<8} {run.name}")
        return 0
    table = LiveTable(spec.name, [run.name for run in runs])
    with table:
        result = run_study(
            spec,
            args.output_dir,
            executor=args.executor,
            max_parallel=args.max_parallel,
            retry_failed=args.retry_failed,
            redo=args.redo,
            callback=table,
        )
    done = len(result.finished) + len(result.skipped)
    print(
        f"\n  runs {len(result.runs)}: {done} done ({len(result.skipped)} before this call), "
        f"{len(result.failed)} failed"
    )
    for name, error in result.failed.items():
        print(f"  failed  {name}: {error}")
    print(f"  leaderboard  {args.output_dir}/leaderboard.md")
    return 1 if result.failed else 0


class LiveTable:
    """The study's progress in the terminal: runs done / running / failed / left, and each running run's step.

    Fed with the JSON-lines events of ``pipelines.jobs`` (``callback(event)``). On a terminal it redraws a table in
    place (``rich``, when installed); otherwise it prints one line per run event.
    """

    def __init__(self, study: str, runs: list[str]):
        self.study, self.runs = study, runs
        self.done: set[str] = set()
        self.failed: dict[str, str] = {}
        self.running: dict[str, str] = {}
        self.skipped = 0
        self.started = time.monotonic()
        self.live: Any = None

    def __enter__(self) -> LiveTable:
        if sys.stdout.isatty():
            try:
                from rich.live import Live
            except ImportError:
                return self
            self.live = Live(self._render(), refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def __call__(self, event: dict[str, Any]) -> None:
        kind, run = event.get("event"), event.get("run")
        if kind == "study_start":
            self.done |= set(self.runs[:0])
            self.skipped = event.get("done", 0)
        elif kind == "run_start":
            self.running[run] = "starting"
        elif kind == "run_step":
            stage = event.get("stage") or ""
            self.running[run] = f"{stage} {event.get('step')}/{event.get('total')}".strip()
        elif kind == "run_done":
            self.running.pop(run, None)
            self.done.add(run)
        elif kind == "run_failed":
            self.running.pop(run, None)
            self.failed[run] = event.get("error", "")
        if self.live is not None:
            self.live.update(self._render())
        elif kind in ("run_start", "run_done", "run_failed"):
            extra = f": {event.get('error')}" if kind == "run_failed" else ""
            print(f"[{self._counts()}] {kind.removeprefix('run_')} {run}{extra}", flush=True)

    def _counts(self) -> str:
        done = len(self.done) + self.skipped
        left = len(self.runs) - done - len(self.failed) - len(self.running)
        return f"done {done}, running {len(self.running)}, failed {len(self.failed)}, left {max(0, left)}"

    def _render(self):
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        table = Table(title=f"{self.study}: {self._counts()} ({elapsed:.0f} s)", title_justify="left")
        table.add_column("running run")
        table.add_column("step")
        for run, step in self.running.items():
            table.add_row(run, step)
        return table
