"""The package keeps the layer map of vlbench.layers: no upward import, no cycle, no private name across modules.

The imports are read with ``ast`` (module-level and function-local ones, relative ones resolved), so a lazy
import cannot hide a back-arrow. ``ALLOWED`` lists the breaches that other parts of issue 19 are still
removing, each with its owner; it must end empty, and an entry that no longer occurs fails too.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import textwrap
from pathlib import Path

from vlbench import layers

ROOT = Path(layers.__file__).resolve().parent.parent

# (kind, file pattern, imported module or its prefix ending in ".") -> who removes it
ALLOWED: dict[tuple[str, str, str], str] = {}


def _allowed(violation: layers.Violation) -> bool:
    return any(_matches(key, violation) for key in ALLOWED)


def _matches(key: tuple[str, str, str], violation: layers.Violation) -> bool:
    kind, pattern, target = key
    reaches = violation.target == target or (target.endswith(".") and violation.target.startswith(target))
    return violation.kind == kind and fnmatch.fnmatch(str(violation.path), pattern) and reaches


def test_the_package_keeps_the_layer_map():
    found = [v for v in layers.check_tree(ROOT) if not _allowed(v)]
    assert not found, "imports against the layer map (docs/architecture.md):\n" + "\n".join(map(str, found))


def test_every_allowed_breach_still_occurs():
    found = layers.check_tree(ROOT)
    stale = [f"{key}: {owner}" for key, owner in ALLOWED.items() if not any(_matches(key, v) for v in found)]
    assert not stale, "fixed, so remove from ALLOWED in tests/test_layers.py:\n" + "\n".join(stale)


def _plant(root: Path, files: dict[str, str]) -> list[layers.Violation]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return layers.check_tree(root)


def test_the_checker_catches_planted_breaches(tmp_path):
    found = _plant(tmp_path, {
        "vlbench/__init__.py": "",
        "vlbench/errors.py": "def f():\n    from vlbench.tasks import base\n",  # lazy, from the foundation up
        "vlbench/tasks/__init__.py": "",
        "vlbench/tasks/base.py": "from ..training.loop import fit\n",  # relative, downward: fine alone
        "vlbench/training/__init__.py": "",
        "vlbench/training/loop.py": "import vlbench.tasks.base\nfit = 1\n",  # upward, and a tasks<->training cycle
        "vlbench/training/steps.py": "from vlbench.training.loop import fit\nfrom vlbench.data.x import _hidden\n",
        "vlbench/data/__init__.py": "",
        "vlbench/data/x.py": "from vlbench import results\n_hidden = 2\n",
        "vlbench/data/y.py": "from vlbench.data import x\nprint(x._hidden)\n",
        "vlbench/results/__init__.py": "",
        "vlbench/newthing.py": "",
    })
    seen = {(v.kind, str(v.path), v.line) for v in found}
    assert ("upward", "vlbench/errors.py", 2) in seen
    assert ("upward", "vlbench/training/loop.py", 1) in seen
    assert ("cycle", "vlbench/training/loop.py", 1) in seen and ("cycle", "vlbench/tasks/base.py", 1) in seen
    assert ("private", "vlbench/training/steps.py", 2) in seen  # from vlbench.data.x import _hidden
    assert ("private", "vlbench/data/y.py", 2) in seen  # x._hidden on an imported module
    assert any(v.kind == "unmapped" and "vlbench.newthing" in v.detail for v in found)
    assert not any(str(v.path) in ("vlbench/data/x.py", "vlbench/training/steps.py") and v.kind != "private"
                   for v in found)  # downward and same-package imports are fine
    drawn = layers.mermaid(layers.scan(tmp_path))
    assert "vlbench_training -.-> vlbench_tasks" in drawn and "vlbench_tasks --> vlbench_training" in drawn


def test_the_checker_passes_a_clean_tree_and_ignores_annotation_only_module_cycles(tmp_path):
    found = _plant(tmp_path, {
        "vlbench/__init__.py": "",
        "vlbench/data/__init__.py": "from vlbench.data.build import make\n",  # re-export: not a cycle
        "vlbench/data/build.py": "from vlbench.data.table import TABLES\nfrom vlbench.errors import E\n",
        "vlbench/data/table.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from vlbench.data.build import Options\nTABLES = {}\n"),
        "vlbench/data/_shared.py": "",
        "vlbench/data/uses_shared.py": "from vlbench.data import _shared\n",  # private to its own package: fine
        "vlbench/errors.py": "E = Exception\n",
    })
    assert found == []


def test_mermaid_draws_the_real_package_graph():
    text = layers.mermaid(layers.scan(ROOT))
    assert text.startswith("flowchart TD")
    assert 'subgraph L9["9: foundation"]' in text
    assert "vlbench_tasks --> vlbench_distributed" in text and "vlbench_training --> vlbench_models" in text
    assert "vlbench_training --> vlbench_tasks" not in text and "vlbench_training -.-> vlbench_tasks" not in text


def test_the_command_prints_mermaid_and_refuses_unknown_arguments():
    run = [sys.executable, "-m", "vlbench.layers"]
    drawn = subprocess.run(run + ["--mermaid"], capture_output=True, text=True, cwd=ROOT)
    assert drawn.returncode == 0 and drawn.stdout.startswith("flowchart TD")
    bad = subprocess.run(run + ["--svg"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and len(bad.stderr.splitlines()) == 1
