"""``erasure-studio methods``: the registered erasure methods, one line each."""

from __future__ import annotations

from collections.abc import Sequence

from .common import PROG, Parser


def cmd_methods(argv: Sequence[str]) -> int:
    import erasure

    Parser(prog=f"{PROG} methods", description="List the registered erasure methods.").parse_args(list(argv))
    for name in erasure.list_methods():
        method = erasure.get_method_class(name)
        print(f"{name:<20} [{method.model_type}] {method.summary}")
    return 0
