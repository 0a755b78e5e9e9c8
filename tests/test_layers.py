"""The layers' import direction, read from the source (every import, function-level ones too).

``contracts`` imports nothing of ours; ``streaming`` and ``retrain`` take typed config of their
own and never import the application (``shelfcast``), the benchmarks or the tests; the
benchmarks never import the tests. Within the tests, helpers come from ``tests/support`` and
fixtures from the conftests: no module imports a test module or a conftest.
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("contracts", "streaming", "retrain", "shelfcast", "bench", "tests")

# Package -> the top-level packages of ours it must not import.
FORBIDDEN = {
    "contracts": {"streaming", "retrain", "shelfcast", "bench", "tests"},
    "streaming": {"shelfcast", "bench", "tests"},
    "retrain": {"shelfcast", "bench", "tests"},
    "bench": {"tests"},
}

# Known back-arrows, (file, module) each: none left.
ALLOWED: set[tuple[str, str]] = set()


def imports(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import in ``path``, relative ones made absolute."""
    package = path.relative_to(root).parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield node.lineno, module


def back_arrows(package: str, root: Path = ROOT) -> list[tuple[str, int, str]]:
    """``(file, line, module)`` of each import ``package`` must not make."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        name = path.relative_to(root).as_posix()
        for line, module in imports(path, root):
            if module.split(".")[0] in FORBIDDEN[package]:
                found.append((name, line, module))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upward(package: str) -> None:
    offenders = [
        f"{name}:{line} imports {module}"
        for name, line, module in back_arrows(package)
        if (name, module) not in ALLOWED
    ]
    assert not offenders, (
        f"{package}/ must not import {', '.join(sorted(FORBIDDEN[package]))}: take typed "
        f"config defined in {package}/, built by the application. Found: {'; '.join(offenders)}"
    )


def test_every_allowed_back_arrow_still_exists() -> None:
    found = {(name, module) for package in FORBIDDEN for name, _, module in back_arrows(package)}
    assert ALLOWED <= found, f"no longer imported, drop from ALLOWED: {sorted(ALLOWED - found)}"


def test_the_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "retrain" / "cluster").mkdir(parents=True)
    source = tmp_path / "retrain" / "cluster" / "late.py"
    source.write_text(
        "def late() -> None:\n"
        "    import shelfcast.settings\n"
        "    from .. import errors\n"
        "    from .task import run_job\n"
    )
    assert [m for _, m in imports(source, tmp_path)] == [
        "shelfcast.settings",
        "retrain",
        "retrain.cluster.task",
    ]
    assert back_arrows("retrain", tmp_path) == [
        ("retrain/cluster/late.py", 2, "shelfcast.settings")
    ]


def test_every_package_of_ours_is_checked_or_on_top() -> None:
    # A new top-level package is either a lower layer (add it to FORBIDDEN) or the app's.
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= set(OURS), f"unknown packages: {sorted(packages - set(OURS))}"


def imported_names(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """Like :func:`imports`, plus ``module.name`` for each ``from module import name`` (which
    may be a submodule: ``from tests.shelfcast import test_service``)."""
    yield from imports(path, root)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def imports_of_test_modules(root: Path = ROOT) -> list[str]:
    """``file:line imports module`` of each import of a test module or a conftest."""
    test_module = re.compile(r"^tests(\.\w+)*\.(test_\w+|conftest)$")
    return [
        f"{path.relative_to(root).as_posix()}:{line} imports {module}"
        for package in ("tests", "bench")
        for path in sorted((root / package).rglob("*.py"))
        for line, module in imported_names(path, root)
        if test_module.match(module)
    ]


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    offenders = imports_of_test_modules()
    assert not offenders, (
        "share helpers through tests/support and fixtures through a conftest.py: "
        + "; ".join(offenders)
    )
