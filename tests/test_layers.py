"""The package's layer contract, checked on its import graph (every import, function-level
ones included): each layer imports only from itself and the layers before it, experiment
packages import each other only along the edges named here, nothing imports a private name
of another module, and the module graph has no cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sublim_jax"
LAYERS = ("core", "io", "llm", "experiments", "cli")  # each may import the ones before it
# experiments built on another experiment: the sweeps are grids over mnist; the toy language
# model reuses the pipeline's questions, number formats, filter and scoring
EXPERIMENT_EDGES = {("sweeps", "mnist"), ("llm_toy", "llm_pipeline")}
MAX_LINES = 400


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(module imported, name imported from it or None, line) for every import of ours."""
    name = next(n for n, p in known.items() if p == path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            if base.split(".")[0] != "sublim_jax":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:  # a module imported from its package
                    found.append((sub, None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
    return found


def private_attributes(path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """``alias._name`` uses where ``alias`` is one of our modules imported into ``path``."""
    tree = ast.parse(path.read_text())
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sublim_jax"):
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    aliases[a.asname] = a.name
    return [
        (f"{aliases[n.value.id]}.{n.attr}", n.lineno)
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id in aliases
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
    ]


def layer(module: str) -> tuple[int, str | None]:
    """(layer index, experiment package or None); the package root and ``__main__`` sit at the
    bottom and the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1, None
    if parts[1] == "__main__":
        return len(LAYERS), None
    index = LAYERS.index(parts[1])
    return index, parts[2] if parts[1] == "experiments" and len(parts) > 2 else None


def violations(root: Path = PACKAGE) -> list[str]:
    """Every break of the contract in the package at ``root``."""
    known = modules(root)
    bad = []
    for name, path in known.items():
        here, exp = layer(name)
        for target, imported, line in imports(path, known):
            there, other = layer(target)
            where = f"{path.relative_to(root.parent)}:{line}"
            if there > here:
                bad.append(f"{where}: {name} imports {target}, a later layer")
            elif exp and other and exp != other and (exp, other) not in EXPERIMENT_EDGES:
                bad.append(f"{where}: experiment {exp} imports experiment {other}")
            if imported and imported.startswith("_") and target != name:
                bad.append(f"{where}: {name} imports the private {target}.{imported}")
        for attr, line in private_attributes(path, known):
            bad.append(f"{path.relative_to(root.parent)}:{line}: {name} uses private {attr}")
    return bad + [f"import cycle: {' -> '.join(c)}" for c in cycles(known)]


def cycles(known: dict[str, Path]) -> list[list[str]]:
    """The import cycles among our modules (one path per strongly connected component)."""
    graph = {n: sorted({t for t, _, _ in imports(p, known) if t != n}) for n, p in known.items()}
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])
    return found


def test_the_package_keeps_its_layer_contract():
    assert violations() == []


def test_no_module_is_over_the_size_limit():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert {n: c for n, c in long.items() if c > MAX_LINES} == {}


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sublim_jax"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"core/a.py": "from sublim_jax.io import b\n", "io/b.py": ""}, "a later layer"),
        ({"core/a.py": "def f():\n    from sublim_jax.cli import m\n", "cli/m.py": ""}, "later"),
        (
            {"experiments/mnist/a.py": "from sublim_jax.experiments.sweeps import b\n",
             "experiments/sweeps/b.py": ""},
            "experiment mnist imports experiment sweeps",
        ),
        ({"io/a.py": "from sublim_jax.io.b import _hidden\n", "io/b.py": ""}, "private"),
        ({"io/a.py": "from sublim_jax.io import b\nb._hidden()\n", "io/b.py": ""}, "private"),
        (
            {"io/a.py": "from sublim_jax.io import b\n",
             "io/b.py": "from sublim_jax.io import a\n"},
            "import cycle",
        ),
    ],
)  # fmt: skip
def test_the_check_catches_each_kind_of_violation(tmp_path, files, expected):
    found = violations(_package(tmp_path, files))
    assert any(expected in v for v in found), found


def test_the_allowed_imports_pass(tmp_path):
    files = {
        "core/a.py": "",
        "io/b.py": "from sublim_jax.core import a\n",
        "experiments/sweeps/c.py": "from sublim_jax.experiments.mnist import d\n",
        "experiments/mnist/d.py": "from sublim_jax.io import b\n",
        "cli/main.py": "from sublim_jax.experiments.sweeps import c\n",
    }
    assert violations(_package(tmp_path, files)) == []


def test_test_modules_have_unique_names():
    """pytest imports test files by basename (rootdir-relative, no packages): two files of one
    name in different folders stop the collection."""
    names = [p.name for p in (PACKAGE.parent / "tests").rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
