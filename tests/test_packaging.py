"""Packaging: ``sft --version``, package discovery (a non-editable install ships only ``sft``), and figure
paths that never point into site-packages.

Checked by hand with a real ``pip install .`` (no deps) into a throwaway venv: site-packages then holds
only sft; ``import sims`` and ``import derivations`` fail; from /tmp, figures.ROOT is None, outputs
default to /tmp/figures, and ``sft figures --list`` exits 2 naming the folders it searched.
"""
import runpy
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools

import sft
from sft.workflow import cli, figures

REPO = Path(__file__).resolve().parents[1]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sft {sft.__version__}"


def test_python_m_sft_version(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sft", "--version"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("sft", run_name="__main__")
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"sft {sft.__version__}"


def test_package_discovery_ships_only_sft():
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = conf["tool"]["setuptools"]["packages"]["find"]
    found = setuptools.find_packages(str(REPO), include=find["include"])
    assert "sft" in found and "sft.workflow" in found
    assert not [p for p in found if not (p == "sft" or p.startswith("sft."))], found
    assert conf["project"]["scripts"]["sft"] == "sft.workflow.cli:main"


def test_paths_from_the_checkout():
    assert figures.ROOT == REPO and figures.SIMS_DIR == REPO / "sims"
    assert figures.FIGURES_DIR == REPO / "figures"


def test_no_checkout_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(figures, "SIMS_DIR", None)
    with pytest.raises(ValueError, match="no source checkout found.*--sims DIR"):
        figures.discover()
