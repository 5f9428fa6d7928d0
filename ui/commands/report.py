"""``erasure-studio report study/``: write a study's leaderboard (``leaderboard.md``, ``.csv``, ``.json``, plots)
from its ``results.jsonl``. ``erasure-studio run`` does this at the end of every call too."""

from __future__ import annotations

from collections.abc import Sequence

from .common import PROG, Parser


def cmd_report(argv: Sequence[str]) -> int:
    parser = Parser(
        prog=f"{PROG} report",
        description="Write leaderboard.md, .csv and .json (with the papers' claims checked), forget_vs_retain.png and "
        "asr.png for a study folder.",
    )
    parser.add_argument("study", help="The study folder (the --output_dir of erasure-studio run).")
    args = parser.parse_args(list(argv))
    from eval.study import write_leaderboard

    board = write_leaderboard(args.study)
    print(board.to_markdown().split("## Backends")[0].rstrip())
    left_out = f", {len(board.stale)} left out: their config changed since they ran" if board.stale else ""
    counts = f"{len(board.rows)} rows, {len(board.failed)} failed runs{left_out}"
    print(f"\n  leaderboard  {args.study}/leaderboard.md ({counts})")
    return 0
