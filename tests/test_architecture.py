"""The package's shape: a light lazy top level, stages that import one way, no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hybridtmd"

#: Stages in the order data flows; a module may import only from its own stage or earlier ones.
STAGES: list[set[str]] = [
    {"errors", "_utils", "_version"},
    {"splits"},
    {"io"},
    {"preprocess"},
    {"datasets"},
    {"descriptors", "embeddings"},
    {"config"},
    {"model"},
    {"explanation", "baseline"},
    {"evaluation"},
    {"reporting"},  # reports of explanations and evaluations, for people
    {"cli", "__main__"},
    {"napari"},  # the optional plugin (hybridtmd[napari]): uses the library, nothing uses it
]

HEAVY = ("torch", "torchvision", "timm", "xgboost", "shap", "matplotlib", "sklearn", "skimage", "napari", "qtpy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST):
    """Every import statement that can run, at any depth (function-level ones included), except
    those under ``if TYPE_CHECKING:``, which never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str) -> set[str]:
    """The package modules that module ``name`` imports (resolved relative imports; ``from pkg
    import sub`` counts ``pkg.sub`` when it is a module, else ``pkg``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            targets = [f"{root}.{alias.name}" if f"{root}.{alias.name}" in MODULES else root
                       for alias in node.names]
        out.update(t for t in targets if t in MODULES and t != name)
    return out


GRAPH = {name: imported_modules(name) for name in MODULES}


def _stage(name: str) -> int:
    top = name.split(".")[1] if "." in name else "__init__"
    for i, stage in enumerate(STAGES):
        if top in stage:
            return i
    raise AssertionError(f"{name} belongs to no stage: add its folder to STAGES")


def test_no_import_cycle():
    """Depth-first search for a back edge; the cycle found is printed whole."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_stages_import_one_way():
    """No exemption: the top-level package (which lazily exports every stage) is imported by no
    module; the version comes from the leaf module ``_version``."""
    wrong = [f"{a} -> {b}" for a, deps in GRAPH.items() if a != "hybridtmd" for b in deps
             if b == "hybridtmd" or _stage(b) > _stage(a)]
    assert not wrong, "a stage imports a later one (or the top-level package):\n" + "\n".join(sorted(wrong))


def test_the_version_has_one_source():
    import tomllib

    import hybridtmd
    from hybridtmd._version import __version__

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hybridtmd._version.__version__"}
    assert hybridtmd.__version__ == __version__
    assert f"## [{__version__}]" in (PACKAGE.parent / "CHANGELOG.md").read_text(encoding="utf-8")


def test_top_level_is_light_and_lazy():
    code = ("import sys, hybridtmd as ht\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert ht.HybridClassifier.__name__ == 'HybridClassifier'\n"
            "assert callable(ht.load_image) and callable(ht.explain) and callable(ht.evaluate)\n"
            "assert sorted(ht.__all__) == sorted([*ht._EXPORTS, '__version__']), ht.__all__\n"
            "assert set(ht.__all__) <= set(dir(ht))\n"
            "for name in ht.__all__: getattr(ht, name)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_unknown_top_level_name_is_an_attribute_error():
    import hybridtmd

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hybridtmd.nope  # noqa: B018


def test_modules_stay_readable():
    """No module over 500 lines: a longer one holds more than one idea."""
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, long


#: A function longer than this (code lines, docstring excluded) says why in its docstring,
#: in a sentence that starts with this phrase.
MAX_FUNCTION_LINES = 60
LONG_REASON = "Kept in one piece because"


def _long_functions() -> list[str]:
    out = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            doc = ast.get_docstring(node) or ""
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]
            if not body:
                continue
            n = body[-1].end_lineno - body[0].lineno + 1
            if n > MAX_FUNCTION_LINES and LONG_REASON not in " ".join(doc.split()):
                out.append(f"{name}.{node.name}: {n} lines")
    return out


def test_functions_stay_short_or_say_why():
    long = _long_functions()
    assert not long, "\n".join(long)


def test_no_private_names_across_modules():
    """``from .x import _y`` couples two modules through a name that promises nothing; a library's
    private module (``skimage.feature._canny_cy``) may vanish in any release."""
    found = []
    for name, path in MODULES.items():
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                private = [a.name for a in node.names  # dunders (__version__) are public by convention
                           if a.name.startswith("_") and not a.name.endswith("__") and a.name != "_utils"]
                module_parts = (node.module or "").split(".")
                if private:
                    found.append(f"{name}: from {'.' * node.level}{node.module or ''} import {', '.join(private)}")
                if not node.level and module_parts[0] not in ("hybridtmd", "__future__") and any(
                        p.startswith("_") for p in module_parts):
                    found.append(f"{name}: from {node.module} import ...")
            else:
                found += [f"{name}: import {a.name}" for a in node.names
                          if any(p.startswith("_") for p in a.name.split(".")) and not a.name.startswith("hybridtmd")]
    assert not found, "\n".join(found)


def _package_imports(path: Path, name: str):
    """(package, imported name, line) of every ``from <subpackage> import name`` in ``path``
    (relative or absolute) that imports from a subpackage's ``__init__`` (not from one of its
    modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source != name and (PACKAGE.parent / source.replace(".", "/") / "__init__.py").exists():
            for alias in node.names:
                yield source, alias.name, node.lineno


def test_package_imports_name_the_public_api():
    """A subpackage's ``__init__`` exports what users call (its ``__all__``); code that needs any
    other name imports it from the module that defines it, so ``__all__`` (and the API pages built
    from it) stays the public surface and the package file is not a second home of internals."""
    import importlib

    wrong = [f"{name}.__all__ names {missing!r}, which it does not define or import"
             for name, path in MODULES.items() if path.name == "__init__.py"
             for missing in getattr(importlib.import_module(name), "__all__", ())
             if not hasattr(importlib.import_module(name), missing)]
    for name, path in MODULES.items():
        for source, imported, line in _package_imports(path, name):
            module = importlib.import_module(source)
            if imported not in getattr(module, "__all__", ()) and f"{source}.{imported}" not in MODULES:
                wrong.append(f"{name}:{line}: from {source} import {imported}")
    assert not wrong, "\n".join(wrong)
