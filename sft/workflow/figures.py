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
  then ``os.replace``); the .json is written last and marks the piece complete.
- Shared pieces: ``Figure(shared={label: function})`` computes that piece by ``function(**kwargs)``
  and caches it under ``<cache>/shared/<script>.<function>/``, once for every figure naming the same
  function and kwargs (gd_convergence and gd_correction share their 1/n theory curve this way).
- Integrity: the .json stores the piece's key (figure, piece label, parameters, code version) and the
  sha256 of the .npz bytes. On load both are checked; a piece whose .json is missing, empty or
  unreadable, whose key differs (another piece's files swapped in, or code changed since) or whose
  .npz is truncated, emptied or replaced is recomputed, and the log names the file and the reason.
  The code version (:func:`code_version`) is a hash of the sources of the sft package and of the
  figure script (and the sibling modules of sims/ it imports): editing them recomputes the figure.
- Interrupts: under :func:`stop_on_interrupt` (``sft figures`` and ``python sims/fig_*.py`` use it)
  the first Ctrl-C (SIGINT) lets the current piece finish and be stored, then :func:`compute_all`
  raises :class:`Interrupted` (exit status 130 on the command line); no KeyboardInterrupt is raised
  inside JAX/XLA or a thread pool. A second Ctrl-C aborts at once (default SIGINT action); the
  atomic writes leave every stored piece valid. A rerun resumes at the first missing piece.
- Threads: every piece is computed under :func:`sft.threads.limit_threads` (BLAS pools of
  numpy/scipy limited so they do not oversubscribe the cores alongside XLA's thread pool).

Paths: the root is the source checkout: the parent of the ``sft`` package folder when that holds
``sims/`` and ``pyproject.toml`` (a checkout or an editable install), else the first such folder at or
above the current directory. Figure scripts in ``<root>/sims``, figures written to ``<root>/figures``
(``<root>/figures/quick`` in quick mode), cache in ``<root>/.cache/sft``. An sft installed without its
source tree (``pip install .``) has no root: figures and cache then default to the current directory
(never site-packages) and :func:`discover` needs the sims folder given. Every path can be overridden.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import importlib.util
import inspect
import io
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Figure", "ROOT", "SIMS_DIR", "FIGURES_DIR", "CACHE_DIR", "discover", "select",
           "piece_key", "code_version", "cached_piece", "compute_all", "build", "run_script",
           "Interrupted", "stop_on_interrupt"]


def _source_checkout() -> Path | None:
    """The folder holding sft/, sims/ and pyproject.toml: the package's parent, else the current folder
    or one above it; None when sft is installed without its source tree."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents):
        if all((root / p).is_dir() for p in ("sft", "sims")) and (root / "pyproject.toml").is_file():
            return root
    return None


ROOT = _source_checkout()
SIMS_DIR = None if ROOT is None else ROOT / "sims"
FIGURES_DIR = (Path.cwd() if ROOT is None else ROOT) / "figures"
CACHE_DIR = (Path.cwd() if ROOT is None else ROOT) / ".cache" / "sft"
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
      shared: ``{label: function}``, pieces computed by ``function(**kwargs)`` (a module-level
        function) instead of ``compute``, cached once for every figure that names the same function
        with the same kwargs, under ``<cache>/shared/<script>.<function>/``: figures that need the
        same expensive computation (e.g. one theory curve) share it.
    """

    name: str
    description: str
    quick: Mapping[str, Any]
    full: Mapping[str, Any]
    pieces: Callable[[Mapping[str, Any]], Mapping[str, Mapping[str, Any]]]
    compute: Callable[..., Mapping[str, Any]]
    plot: Callable[[Mapping[str, Mapping[str, np.ndarray]], Mapping[str, Any]], Any]
    shared: Mapping[str, Callable[..., Mapping[str, Any]]] = dataclasses.field(default_factory=dict)

    def params(self, mode: str) -> Mapping[str, Any]:
        """The parameters of ``mode`` ('quick' or 'full')."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not allowed: use one of {MODES}")
        return self.quick if mode == "quick" else self.full


def discover(sims_dir=None) -> dict[str, Figure]:
    """Import every ``fig_*.py`` in ``sims_dir`` (default ``<root>/sims``) and return ``{name: Figure}``.

    Each script must define ``FIGURE``, a :class:`Figure` named after the file (``fig_<name>.py``).
    """
    if sims_dir is None and SIMS_DIR is None:
        raise ValueError(f"sims_dir=None: no source checkout found (looked for sims/ next to "
                         f"{Path(__file__).resolve().parents[1]} and in {Path.cwd()} and above); sft is "
                         "installed without its figure scripts: run from a checkout or pass the folder "
                         "holding fig_*.py (sft figures --sims DIR)")
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
    from importlib.metadata import version  # no import of jax just to record its version

    from .. import __version__
    return {"sft": __version__, "jax": version("jax"), "numpy": np.__version__}


_SFT_DIR = Path(__file__).resolve().parents[1]


def _sha_of_files(files, root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f.name).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def code_version(figure: Figure) -> str:
    """First 16 hex of the sha256 of the code a figure's results depend on.

    The sources hashed: every ``*.py`` of the sft package, the file defining ``figure.compute`` (the
    figure script) and the modules in the same folder that the script imports names from (e.g. a
    shared task in sims/). Read on every call (about 1 ms), so an edit is seen at once.
    """
    files = set(_SFT_DIR.rglob("*.py"))
    module = sys.modules.get(getattr(figure.compute, "__module__", None) or "")
    script = getattr(module, "__file__", None)
    if script:
        script = Path(script).resolve()
        files.add(script)
        for obj in vars(module).values():
            dep = getattr(inspect.getmodule(obj), "__file__", None)
            if dep and Path(dep).resolve().parent == script.parent:
                files.add(Path(dep).resolve())
    return _sha_of_files(sorted(files), _SFT_DIR.parent)


class Interrupted(Exception):
    """Raised by :func:`compute_all` when an interrupt was requested (Ctrl-C under
    :func:`stop_on_interrupt`): the finished pieces are stored, the rest are not computed."""


_STOP = threading.Event()


@contextlib.contextmanager
def stop_on_interrupt():
    """Within the block, SIGINT (Ctrl-C) stops figure computations between pieces.

    The first SIGINT only sets a flag (and says so on stderr): the running piece finishes and is
    stored, then :func:`compute_all` raises :class:`Interrupted`. The handler then restores the
    default action, so a second SIGINT terminates the process at once (stored pieces stay valid, as
    every write is atomic). Outside the main thread this does nothing. The previous handler is
    restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _STOP.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.write(2, b"\nsft: interrupt received: stopping after the current piece (it is kept); "
                    b"press Ctrl-C again to abort at once\n")

    previous = signal.signal(signal.SIGINT, handler)
    _STOP.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _STOP.clear()


def _key(figure: Figure, label: str, kwargs: Mapping[str, Any], code: str) -> dict:
    """The identity of a stored piece, as recorded in its .json (JSON round-trip normalized)."""
    return json.loads(json.dumps({"figure": figure.name, "piece": label, "kwargs": kwargs,
                                  "code": code}, sort_keys=True))


def _load_verified(npz: Path, meta: Path, key: dict) -> tuple[dict | None, str]:
    """(arrays, "") if the stored piece is intact and has ``key``; else (None, why not)."""
    if not meta.exists() and not npz.exists():
        return None, ""
    if not meta.exists():
        return None, f"{meta} is missing (incomplete piece)"
    if not npz.exists():
        return None, f"{npz} is missing"
    try:
        record = json.loads(meta.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"{meta} is empty or unreadable ({type(err).__name__}: {err})"
    if not isinstance(record, dict) or not {"key", "sha256"} <= set(record):
        return None, f"{meta} has no key and checksum (written by an older sft, or damaged)"
    stored_key, checksum = record["key"], record["sha256"]
    if stored_key != key:
        if isinstance(stored_key, dict) and {k: v for k, v in stored_key.items() if k != "code"} == \
                {k: v for k, v in key.items() if k != "code"}:
            return None, (f"{meta} was computed by other code (version {stored_key.get('code')}, "
                          f"now {key['code']})")
        return None, f"{meta} holds another piece (figure/piece/parameters differ)"
    blob = npz.read_bytes()
    if hashlib.sha256(blob).hexdigest() != checksum:
        return None, f"{npz} does not match the sha256 in its .json (truncated, emptied or replaced)"
    try:
        with np.load(io.BytesIO(blob)) as data:
            return {k: data[k] for k in data.files}, ""
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:  # checksum fine, not an npz
        return None, f"{npz} is not a readable .npz ({type(err).__name__}: {err})"


def cached_piece(figure: Figure, label: str, kwargs: Mapping[str, Any], cache_dir, log=print,
                 code: str | None = None) -> tuple[dict, bool]:
    """Arrays of one piece, from ``cache_dir`` if present and intact, else computed and stored.

    Returns ``(arrays, was_cached)``. A stored piece is used only if its .json key (figure, piece,
    parameters, ``code`` = :func:`code_version` by default) matches and its .npz matches the sha256
    in the .json; otherwise the reason is logged (naming the file) and the piece is recomputed. The
    .npz is written first, then the .json that marks the piece complete, each atomically. The
    computation runs under :func:`sft.threads.limit_threads`.
    """
    from ..threads import limit_threads

    folder = Path(cache_dir) / figure.name
    stem = piece_key(figure.name, label, kwargs)
    npz, meta = folder / f"{stem}.npz", folder / f"{stem}.json"
    key = _key(figure, label, kwargs, code_version(figure) if code is None else code)
    arrays, why = _load_verified(npz, meta, key)
    if arrays is not None:
        return arrays, True
    if why:
        log(f"[{figure.name}] piece {label}: recomputing: {why}")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with limit_threads():
        arrays = {k: np.asarray(v) for k, v in figure.compute(**kwargs).items()}
    elapsed = time.perf_counter() - start
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    _atomic_write(npz, lambda f: f.write(blob))
    record = {"key": key, "sha256": hashlib.sha256(blob).hexdigest(),
              "figure": figure.name, "piece": label, "kwargs": kwargs, "versions": _versions(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "compute_seconds": round(elapsed, 3),
              "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
    _atomic_write(meta, lambda f: f.write(json.dumps(record, indent=2, sort_keys=True).encode()))
    return arrays, False


def compute_all(figure: Figure, mode: str, cache_dir=None, log=print) -> dict[str, dict]:
    """Every piece of ``figure`` in ``mode``, cached; one progress line per piece through ``log``.

    Raises :class:`Interrupted` before starting a piece if an interrupt was requested (see
    :func:`stop_on_interrupt`); the pieces finished so far are stored.
    """
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    pieces = figure.pieces(figure.params(mode))
    code = code_version(figure)
    unknown = set(figure.shared) - set(pieces)
    if unknown:
        raise ValueError(f"shared piece(s) {sorted(unknown)} of figure {figure.name!r} are not among "
                         f"its pieces {list(pieces)}")
    results, t0 = {}, time.perf_counter()
    for i, (label, kwargs) in enumerate(pieces.items(), 1):
        if not re.fullmatch(r"[\w.-]+", label):
            raise ValueError(f"piece label {label!r} of figure {figure.name!r} is not allowed: use "
                             "letters, digits, '_', '-' and '.' (it names the cache files)")
        _raise_if_stopped(figure, f"before piece {i}/{len(pieces)} {label}", cache_dir)
        start = time.perf_counter()
        if label in figure.shared:
            owner = _shared_owner(figure.shared[label])
            results[label], was_cached = cached_piece(owner, label, kwargs, cache_dir, log)
        else:
            results[label], was_cached = cached_piece(figure, label, kwargs, cache_dir, log, code)
        now = time.perf_counter()
        how = "cached" if was_cached else f"computed in {now - start:.1f} s"
        how += f" (shared: {owner.name})" if label in figure.shared else ""
        log(f"[{figure.name}] piece {i}/{len(pieces)} {label}: {how} (total {now - t0:.1f} s)")
    _raise_if_stopped(figure, f"after its {len(pieces)} pieces, before plotting", cache_dir)
    return results


def _shared_owner(function) -> Figure:
    """The stand-in figure that owns a shared piece: named ``shared/<script stem>.<function name>``,
    computed by ``function`` (its code version covers the function's file)."""
    path = inspect.getsourcefile(function)
    name = f"shared/{Path(path).stem}.{function.__qualname__}"
    return Figure(name=name, description="", quick={}, full={}, pieces=None, compute=function,
                  plot=None)


def _raise_if_stopped(figure: Figure, where: str, cache_dir) -> None:
    if _STOP.is_set():
        raise Interrupted(f"interrupted: [{figure.name}] stopped {where}; the finished pieces are "
                          f"cached in {Path(cache_dir)}: rerun the same command to resume")


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
    with stop_on_interrupt():
        try:
            build(figure, "quick" if args.quick else "full", args.out, args.cache)
        except Interrupted as err:
            print(f"{figure.name}: {err}", file=sys.stderr)
            return 130
    return 0
