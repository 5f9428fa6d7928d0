"""The ``erasure-studio`` command line.

```
erasure-studio methods
erasure-studio erase METHOD --concept star [--preset paper] [--pretrained_model_name_or_path toy] [--output_dir DIR]
erasure-studio sample ARTIFACT_OR_MODEL --prompt "a red star" --seed 0 1 2 [--output_dir DIR]
erasure-studio attack ARTIFACT_OR_MODEL --prompts toy:star [--config configs/attack/unlearndiffatk-object.json]
erasure-studio eval ARTIFACT_OR_MODEL [--base ...] [--attack_report FILE]
erasure-studio run JOBS.yaml --output_dir study/ [--executor local|slurm|ray] [--max_parallel N] [--dry_run]
erasure-studio report study/
erasure-studio export ARTIFACT --format diffusers|single-file|lora --output PATH [--rank 4] [--dtype fp16]
erasure-studio demo
erasure-studio toy build | toy grid
```

Each command is a function ``cmd_NAME(argv) -> exit status`` in ``ui/commands/NAME.py``, listed in :data:`COMMANDS`.
The flags of ``erase``, ``attack`` and ``eval`` are generated from their config dataclasses
(``transformers.HfArgumentParser``), so each flag has the field's type, choices and help text; ``--config FILE``
supplies values that flags override. Bad input prints one line naming the problem and the fix, and exits with
status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from pipelines.errors import StudioError
from ui.commands.attack import cmd_attack
from ui.commands.common import PROG, UsageError
from ui.commands.demo import cmd_demo
from ui.commands.erase import cmd_erase
from ui.commands.eval import cmd_eval
from ui.commands.export import cmd_export
from ui.commands.methods import cmd_methods
from ui.commands.report import cmd_report
from ui.commands.run import cmd_run
from ui.commands.sample import cmd_sample
from ui.commands.toy import cmd_toy

__all__ = ["COMMANDS", "PROG", "Terminated", "UsageError", "main"]

COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "methods": (cmd_methods, "List the registered erasure methods."),
    "erase": (cmd_erase, "Erase a concept from a model and save the artifact folder."),
    "sample": (cmd_sample, "Generate images from a model or an artifact folder."),
    "attack": (cmd_attack, "Attack an erased model with adversarial prompts (UnlearnDiffAtk): pre-ASR and ASR."),
    "eval": (cmd_eval, "Score an erased model against its base: forget/retain rates, UA/IRA/CRA, CLIP, FID, ASR."),
    "run": (cmd_run, "Run a batch study from a job file (resumable) and write its leaderboard."),
    "export": (cmd_export, "Export an artifact: a merged diffusers folder, a single-file checkpoint, or a LoRA."),
    "report": (cmd_report, "Write a study's leaderboard (Markdown, CSV, plots) from its results."),
    "demo": (cmd_demo, "Open the Erasure Studio in the browser."),
    "toy": (cmd_toy, "Rebuild the bundled toy world, or draw a sample grid of a model."),
}
"""Every command: name -> (function of the arguments after the name returning the exit status, one-line summary)."""


INTERRUPT_NOTE = (
    "no half-written artifact was left; finished attack prompts and study runs are kept, so re-running the same "
    "command resumes"
)
"""What an interrupted command has kept, printed after ``interrupted`` / ``terminated`` (exit status 130 / 143)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same cleanup runs (staging folders removed, files closed)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def _terminate_as_interrupt() -> object:
    """Turn SIGTERM into :class:`Terminated` in the main thread; returns the previous handler (``None`` when the
    handler could not be set, e.g. outside the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # pragma: no cover - not the main interpreter
        return None


def _restore_terminate(previous: object) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _print_help() -> None:
    width = max(map(len, COMMANDS))
    print(f"usage: {PROG} COMMAND [options]\n\ncommands:")
    for name, (_, summary) in COMMANDS.items():
        print(f"  {name:<{width}}  {summary}")
    print(f"\n{PROG} COMMAND --help shows a command's options.")


def _finish_distributed(code: int) -> int:
    """End a multi-process run cleanly. accelerate on CPU sometimes aborts at interpreter exit ("terminate called
    without an active exception", ENVIRONMENT.md); leaving through ``os._exit`` after the group is destroyed avoids it.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def quiet_libraries() -> None:
    """Silence the loading progress bars and info logs of diffusers/transformers; our own bars stay."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging
    except ImportError:  # pragma: no cover
        return
    for lib in (diffusers_logging, transformers_logging):
        lib.disable_progress_bar()
        lib.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``erasure-studio`` console script. Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _print_help()
        return 0 if argv else 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet_libraries()
    command, rest = argv[0], argv[1:]
    previous = _terminate_as_interrupt()
    try:
        if command not in COMMANDS:
            raise UsageError(f"unknown command {command!r}; choose one of: {', '.join(COMMANDS)}")
        function, _ = COMMANDS[command]
        code = function(rest)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers, rather than at interpreter exit
    except StudioError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        # The reader of stdout went away (`erasure-studio run ... --dry_run | head`): stop quietly, as a process that
        # SIGPIPE killed would, instead of a traceback. stdout goes to devnull so the exit-time flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141
    except KeyboardInterrupt as err:
        code = 143 if isinstance(err, Terminated) else 130
        print(f"{PROG}: {'terminated' if code == 143 else 'interrupted'}; {INTERRUPT_NOTE}", file=sys.stderr)
    finally:
        _restore_terminate(previous)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _finish_distributed(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
