"""The layers hold: each package imports only the ones below it (edges -> services ->
engine, jobs, storage -> core), nothing imports the tests, and the command line's
ask and compare never load the web app."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {
    "core": set(),
    "storage": {"core"},
    "files": {"core", "storage"},
    "assistant": {"core"},
    "trainer": {"core", "storage"},
    "supervision": {"core", "storage", "trainer"},
    "services": {"core", "storage", "files", "assistant", "trainer", "supervision"},
    "web": {"core", "storage", "files", "assistant", "trainer", "supervision", "services"},
    "bench": {"core", "storage", "files", "assistant", "trainer", "supervision", "services",
              "web"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names imported anywhere in a file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def imported_modules(path: Path, package: str) -> set[str]:
    """Modules of `package` a file imports anywhere (inside functions too), by name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith(package + ".")}


def test_no_import_circles_inside_a_package():
    """A module never imports, even late, one that imports it back (directly or round
    a circle): shared types go into a module both read."""
    for package in ALLOWED:
        modules = {f"{package}.{p.stem}": p for p in (REPO / package).glob("*.py")}
        graph = {name: imported_modules(path, package) & set(modules)
                 for name, path in modules.items()}
        for start in graph:
            seen, todo = set(), [(start, [start])]
            while todo:
                name, path = todo.pop()
                for found in graph[name]:
                    assert found != start, f"import circle: {' -> '.join(path + [start])}"
                    if found not in seen:
                        seen.add(found)
                        todo.append((found, path + [found]))


def test_each_package_imports_only_the_layers_below_it():
    ours = set(ALLOWED) | {"app", "tests", "tiny", "serving", "helpers"}
    for package, allowed in ALLOWED.items():
        for path in (REPO / package).rglob("*.py"):
            wrong = (imported_packages(path) & ours) - allowed - {package}
            assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_ask_and_compare_do_not_load_the_web_app(tiny_model_dir, tmp_path):
    check = (
        "import sys, app\n"
        f"for argv in (['ask', 'Say hello.'], ['compare', 'Say hello.']):\n"
        f"    assert app.main(argv + ['--model', {str(tiny_model_dir)!r}, '--home', "
        f"{str(tmp_path / 'home')!r}]) == 0\n"
        "assert 'gradio' not in sys.modules, 'gradio was imported'\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
