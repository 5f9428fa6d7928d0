"""The architecture holds: layers point one way, packages keep their private names, ``import erasure`` stays light.

Layers (README "Architecture"): ``pipelines`` <- ``erasure``, ``gan`` <- ``eval`` <- ``ui``. Every import in the
library is read with ``ast`` (module level and inside functions alike, since a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"pipelines": 0, "erasure": 1, "gan": 1, "eval": 2, "ui": 3}
# Method files may import erasure.base and pipelines, never each other (README "Architecture").
METHOD_FILES = {"erasure": ("esd", "salun", "advunlearn", "doco", "sfd"), "gan": ("adapt_then_unlearn",)}


def _modules():
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


def _imports(path: Path, parts: list[str] | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) for every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parts = parts or list(path.relative_to(ROOT).with_suffix("").parts)
    package_parts = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    # Imports under ``if TYPE_CHECKING:`` only name types for annotations; they are not dependencies at run time.
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module, [alias.name for alias in node.names]))
    return out


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_layers_point_one_way():
    wrong = []
    for package, path in _modules():
        for line, module, _ in _imports(path):
            target = _top(module)
            if target in LAYERS and LAYERS[target] > LAYERS[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({target} is above {package})")
    assert not wrong, "\n".join(wrong)


def test_no_package_imports_another_packages_private_names():
    wrong = []
    for package, path in _modules():
        for line, module, names in _imports(path):
            target = _top(module)
            if target not in LAYERS or target == package:
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            private_module = [p for p in module.split(".")[1:] if p.startswith("_")]
            if private or private_module:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module} {private or ''}")
    assert not wrong, "\n".join(wrong)


def test_method_files_do_not_import_each_other():
    wrong = []
    for package, methods in METHOD_FILES.items():
        for name in methods:
            path = ROOT / package / f"{name}.py"
            if not path.exists():
                continue
            for line, module, names in _imports(path):
                others = {f"{p}.{m}" for p, ms in METHOD_FILES.items() for m in ms} - {f"{package}.{name}"}
                hits = [module] if module in others else [f"{module}.{n}" for n in names if f"{module}.{n}" in others]
                wrong += [f"{path.relative_to(ROOT)}:{line} imports {hit}" for hit in hits]
    assert not wrong, "\n".join(wrong)


def test_the_cli_has_a_static_command_table():
    source = (ROOT / "ui" / "cli.py").read_text()
    assert "importlib" not in source, "ui/cli.py builds its command table from real imports, not strings"


@pytest.mark.parametrize("package", ["erasure", "gan", "pipelines"])
def test_importing_the_library_stays_light(package):
    heavy = ("eval", "ui", "gradio", "matplotlib")
    code = (
        f"import json, sys; import {package}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == [], f"import {package} pulled in {heavy}"


def test_the_layer_test_sees_a_violation(tmp_path):
    """The checker itself: an upward import in a pipelines module is found (so the tests above can fail)."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from eval.judges import load_judge\n    from ..toy import _private\n")
    found = [(m, names) for _, m, names in _imports(module, parts=["pipelines", "toy", "probe"])]
    assert found == [("eval.judges", ["load_judge"]), ("pipelines.toy", ["_private"])]
    assert LAYERS[_top(found[0][0])] > LAYERS["pipelines"]
