"""Each layer of afmask imports only the layers before it (CONTRIBUTING.md)."""

import ast
from pathlib import Path

ORDER = [
    "backend", "fl", "io", "features", "model", "kernels", "mask", "attribute", "evaluate", "report", "bench", "api",
    "corpus", "cli",
]
PACKAGE = Path(__file__).resolve().parents[1] / "afmask"


def upward_imports():
    rank = {name: i for i, name in enumerate(ORDER)}
    found = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if layer not in rank:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "afmask" and len(parts) > 1 and rank.get(parts[1], -1) > rank[layer]:
                    found.append(f"{path.relative_to(PACKAGE)} imports {module}")
    return found


def test_layers_import_only_downward():
    assert upward_imports() == []


def test_every_layer_is_listed():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} | {"api"}
    assert packages - {"data"} <= set(ORDER) | {"cli"}
