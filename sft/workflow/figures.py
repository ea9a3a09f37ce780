"""Figures: a registry of figure scripts and an on-disk cache of their computations.

Design (showyourwork-like; the workflow tier of sft):

- One script per figure, ``sims/fig_<name>.py``, defining ``FIGURE = Figure(...)``. :func:`discover`
  imports every ``fig_*.py`` in the sims folder and collects them by name.
- Computation is separate from plotting. A figure has parameters for two modes (``quick``: CI-sized,
  ``full``: the published figure). ``pieces(params)`` splits the work into independent pieces
  ``{label: kwargs}``; ``compute(**kwargs)`` returns a dict of arrays for one piece; ``plot(results,
  params)`` gets ``{label: {array name: ndarray}}`` loaded from the cache and returns a
  :class:`matplotlib.figure.Figure` (built without pyplot, so no global backend state).
- Each piece is cached as ``<cache>/<figure>/<label>-<hash>.npz`` (the arrays) plus ``.json`` (its
  parameters, which carry seed, widths, sample counts and dtype, and the sft/jax/numpy versions, the
  date and the compute time). The hash covers the figure name and the piece's parameters, so quick
  and full modes never collide. Both files are written atomically (temporary file in the same folder,
  then ``os.replace``); the .json is written last and marks the piece complete. An interrupted run
  resumes at the first missing piece; a rerun only loads and plots. Code changes do not invalidate
  the cache: delete ``<cache>/<figure>/`` to recompute.

Paths: the repository root is the parent of the ``sft`` package folder (an editable install);
figure scripts in ``<root>/sims``, figures written to ``<root>/figures`` (``<root>/figures/quick`` in
quick mode), cache in ``<root>/.cache/sft``. Every one of them can be overridden.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.util
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Figure", "ROOT", "SIMS_DIR", "FIGURES_DIR", "CACHE_DIR", "discover", "select",
           "piece_key", "cached_piece", "compute_all", "build", "run_script"]

ROOT = Path(__file__).resolve().parents[2]
SIMS_DIR = ROOT / "sims"
FIGURES_DIR = ROOT / "figures"
CACHE_DIR = ROOT / ".cache" / "sft"
MODES = ("quick", "full")


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure: parameters per mode, how to split and compute the work, and how to plot it.

    Attributes:
      name: the figure's name; the script is ``sims/fig_<name>.py`` and the output ``<name>.png``.
      description: one line, shown by ``sft figures --list``.
      quick, full: JSON-serializable parameters of each mode.
      pieces: ``params -> {label: kwargs}``, independent pieces of work (each cached on its own);
        kwargs must be JSON-serializable and should carry seed, widths, sample counts and dtype.
      compute: ``compute(**kwargs) -> {name: array}`` for one piece.
      plot: ``plot(results, params) -> matplotlib.figure.Figure`` with ``results = {label: arrays}``;
        only loads and plots.
    """

    name: str
    description: str
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    pieces: Callable[[Mapping[str, Any]], Mapping[str, Mapping[str, Any]]]
    compute: Callable[..., Mapping[str, Any]]
    plot: Callable[[Mapping[str, Mapping[str, np.ndarray]], Mapping[str, Any]], Any]

    def params(self, mode: str) -> Mapping[str, Any]:
        """The parameters of ``mode`` ('quick' or 'full')."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not allowed: use one of {MODES}")
        return self.quick if mode == "quick" else self.full


def discover(sims_dir=None) -> dict[str, Figure]:
    """Import every ``fig_*.py`` in ``sims_dir`` (default ``<root>/sims``) and return ``{name: Figure}``.

    Each script must define ``FIGURE``, a :class:`Figure` named after the file (``fig_<name>.py``).
    """
    sims_dir = Path(SIMS_DIR if sims_dir is None else sims_dir)
    if not sims_dir.is_dir():
        raise ValueError(f"sims_dir={str(sims_dir)!r} is not a folder: give the folder holding the "
                         "fig_*.py figure scripts")
    figures = {}
    for path in sorted(sims_dir.glob("fig_*.py")):
        module_name = f"_sft_figure_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        fig = getattr(module, "FIGURE", None)
        if not isinstance(fig, Figure):
            raise ValueError(f"{path} defines no FIGURE = sft.workflow.Figure(...)")
        if fig.name != path.stem[len("fig_"):]:
            raise ValueError(f"{path} defines FIGURE.name={fig.name!r}: it must be "
                             f"{path.stem[len('fig_'):]!r}, the file name without 'fig_'")
        figures[fig.name] = fig
    return figures


def select(figures: Mapping[str, Figure], only=None) -> list[Figure]:
    """The figures named in ``only`` (all of them if ``only`` is None or empty), in that order."""
    if not only:
        return list(figures.values())
    unknown = [name for name in only if name not in figures]
    if unknown:
        raise ValueError(f"unknown figure name(s) {', '.join(map(repr, unknown))}; known figures: "
                         f"{', '.join(figures) or '(none)'}")
    return [figures[name] for name in dict.fromkeys(only)]


def piece_key(figure_name: str, label: str, kwargs: Mapping[str, Any]) -> str:
    """File stem of a cached piece: ``<label>-<first 16 hex of sha256(figure name, kwargs)>``."""
    blob = json.dumps({"figure": figure_name, "kwargs": kwargs}, sort_keys=True)
    return f"{label}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _versions() -> dict[str, str]:
    import jax

    from .. import __version__
    return {"sft": __version__, "jax": jax.__version__, "numpy": np.__version__}


def cached_piece(figure: Figure, label: str, kwargs: Mapping[str, Any], cache_dir) -> tuple[dict, bool]:
    """Arrays of one piece, from ``cache_dir`` if present, else computed and stored.

    Returns ``(arrays, was_cached)``. The .npz is written first, then the .json that marks the piece
    complete, each atomically.
    """
    folder = Path(cache_dir) / figure.name
    stem = piece_key(figure.name, label, kwargs)
    npz, meta = folder / f"{stem}.npz", folder / f"{stem}.json"
    if meta.exists() and npz.exists():
        with np.load(npz) as data:
            return {k: data[k] for k in data.files}, True
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    arrays = {k: np.asarray(v) for k, v in figure.compute(**kwargs).items()}
    elapsed = time.perf_counter() - start
    _atomic_write(npz, lambda f: np.savez(f, **arrays))
    record = {"figure": figure.name, "piece": label, "kwargs": kwargs, "versions": _versions(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "compute_seconds": round(elapsed, 3),
              "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
    _atomic_write(meta, lambda f: f.write(json.dumps(record, indent=2, sort_keys=True).encode()))
    return arrays, False


def compute_all(figure: Figure, mode: str, cache_dir=None, log=print) -> dict[str, dict]:
    """Every piece of ``figure`` in ``mode``, cached; one progress line per piece through ``log``."""
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    pieces = figure.pieces(figure.params(mode))
    results, t0 = {}, time.perf_counter()
    for i, (label, kwargs) in enumerate(pieces.items(), 1):
        if not re.fullmatch(r"[\w.-]+", label):
            raise ValueError(f"piece label {label!r} of figure {figure.name!r} is not allowed: use "
                             "letters, digits, '_', '-' and '.' (it names the cache files)")
        start = time.perf_counter()
        results[label], was_cached = cached_piece(figure, label, kwargs, cache_dir)
        now = time.perf_counter()
        how = "cached" if was_cached else f"computed in {now - start:.1f} s"
        log(f"[{figure.name}] piece {i}/{len(pieces)} {label}: {how} (total {now - t0:.1f} s)")
    return results


def build(figure: Figure, mode: str = "full", out_dir=None, cache_dir=None, log=print) -> Path:
    """Compute (or load) every piece, plot, and save ``<out_dir>/<name>.png``; returns the path.

    ``out_dir`` defaults to ``<root>/figures`` in full mode and ``<root>/figures/quick`` in quick mode.
    """
    results = compute_all(figure, mode, cache_dir, log)
    if out_dir is None:
        out_dir = FIGURES_DIR / "quick" if mode == "quick" else FIGURES_DIR
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = figure.plot(results, figure.params(mode))
    path = out_dir / f"{figure.name}.png"
    _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=150))
    log(f"[{figure.name}] wrote {path}")
    return path


def run_script(figure: Figure, argv=None) -> int:
    """Command line of one figure script: ``python sims/fig_<name>.py [--quick] [--out D] [--cache D]``.
    """
    parser = argparse.ArgumentParser(description=f"{figure.name}: {figure.description}")
    parser.add_argument("--quick", action="store_true", help="CI-sized parameters")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: figures/ in the repository)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="cache folder (default: .cache/sft/ in the repository)")
    args = parser.parse_args(argv)
    build(figure, "quick" if args.quick else "full", args.out, args.cache)
    return 0
