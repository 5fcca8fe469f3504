"""Imports run one way: the model package imports nothing above it, and its conversions and tower export
import nothing of the model they serve (the model imports them)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fgclip" / "model"
ABOVE_THE_MODEL = (
    "fgclip.train",
    "fgclip.data",
    "fgclip.pipeline",
    "fgclip.tokenizer",
    "fgclip.transforms",
    "fgclip.folders",
    "fgclip.convert",
    "fgclip.onnx_export",
    "fgclip.model_card",
    "eval",
    "lmm_integration",
    "benchmarks",
)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (functions and `TYPE_CHECKING` blocks included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_the_model_imports_nothing_above_it(path):
    above = sorted(name for name in imported_modules(path) if name.startswith(ABOVE_THE_MODEL))
    assert not above, f"{path.name} imports {above}"


@pytest.mark.parametrize("name", ["conversion.py", "vision_tower.py", "configuration.py", "positions.py"])
def test_conversions_and_export_import_nothing_of_the_model(name):
    modeling = sorted(
        imported
        for imported in imported_modules(PACKAGE / name)
        if imported.startswith(("fgclip.model.modeling", "fgclip.model.FGCLIP", "fgclip.auto"))
    )
    assert not modeling, f"{name} imports {modeling}"
