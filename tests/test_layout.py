"""The package tree is the architecture: subpackages with lazy public faces that resolve, one way."""
import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

import sft

SFT = pathlib.Path(sft.__file__).parent
SUBPACKAGES = sorted(p.name for p in SFT.iterdir() if (p / "__init__.py").exists())
TIER = {"gaussian": 0, "kernels": 1, "finite": 1, "symbolic": 1, "predict": 1, "circuits": 1, "sim": 2, "workflow": 2}


def test_import_sft_loads_no_submodule():
    code = "import sft, sys; print(sorted(m for m in sys.modules if m.startswith('sft')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sft', 'sft._lazy']", out


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_public_face_resolves(name):
    package = importlib.import_module(f"sft.{name}")
    assert package.__all__, name
    for attr in package.__all__:
        obj = getattr(package, attr)
        if not isinstance(obj, type(sys)):  # a re-exported name lives in one of the package's modules
            assert getattr(obj, "__module__", f"sft.{name}").startswith(f"sft.{name}") or not callable(obj), attr
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018


def test_every_module_is_in_a_public_face():
    for name in SUBPACKAGES:
        package = importlib.import_module(f"sft.{name}")
        modules = {p.stem for p in (SFT / name).glob("*.py") if p.stem != "__init__"}
        assert modules <= set(package.__all__), (name, modules - set(package.__all__))


def test_numerics_tier_does_not_import_physics_or_workflows():
    """sft.gaussian (numerics) imports nothing from the physics or workflow subpackages at module level."""
    for path in (SFT / "gaussian").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                top = node.module.split(".")[0]
                assert TIER.get(top, 0) == 0, (path.name, node.module)


def test_physics_tiers_do_not_import_workflows():
    """Kernels, finite-width theory, symbolic layer, predictors and circuits never import sft.workflow."""
    for name in ("kernels", "finite", "symbolic", "predict", "circuits"):
        for path in (SFT / name).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                    assert not node.module.startswith("workflow"), (path.name, node.module)
