"""The figures workflow: registry, cache (atomic, resumable), command line, the real figure."""
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sft.workflow import cli
from sft.workflow import figures
from sft.workflow import Figure, build, compute_all, discover, select

TOY_SCRIPT = '''
import matplotlib.figure
import numpy as np
from sft.workflow import Figure

def pieces(params):
    return {f"p{i}": dict(i=i, n=params["n"]) for i in range(3)}

def compute(*, i, n):
    return dict(y=np.arange(n) * float(i))

def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(3, 2))
    ax = fig.subplots()
    for r in results.values():
        ax.plot(r["y"])
    return fig

FIGURE = Figure(name="NAME", description="a toy figure NAME", quick=dict(n=3), full=dict(n=5),
                pieces=pieces, compute=compute, plot=plot)
'''


@pytest.fixture(autouse=True)
def stand_in_sft_sources(tmp_path_factory, monkeypatch):
    """The code version hashes the sft sources; here they are a stand-in folder, so that edits to
    sft made while the tests run do not invalidate caches mid-test (and a test can edit it)."""
    folder = tmp_path_factory.mktemp("sft_sources") / "sft"
    folder.mkdir()
    (folder / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(figures, "_SFT_DIR", folder)
    return folder


def _sims(tmp_path, *names):
    folder = tmp_path / "sims"
    folder.mkdir()
    for name in names:
        (folder / f"fig_{name}.py").write_text(TOY_SCRIPT.replace("NAME", name))
    return folder


def _counting_figure(calls, fail_at=None):
    """A Figure whose compute appends its piece index to ``calls`` and raises at piece ``fail_at``."""
    def compute(*, i, n):
        if i == fail_at:
            raise RuntimeError("interrupted")
        calls.append(i)
        return dict(y=np.arange(n) * float(i))
    return Figure(name="count", description="", quick=dict(n=3), full=dict(n=5),
                  pieces=lambda p: {f"p{i}": dict(i=i, n=p["n"]) for i in range(3)},
                  compute=compute, plot=None)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_registry_discovers_the_real_figure():
    registry = discover()
    assert "correlation_depth" in registry
    fig = registry["correlation_depth"]
    assert fig.description and set(fig.pieces(fig.quick)) != set()


def test_discover_rejects_a_script_named_unlike_its_figure(tmp_path):
    folder = _sims(tmp_path, "a")
    (folder / "fig_a.py").rename(folder / "fig_b.py")
    with pytest.raises(ValueError, match="FIGURE.name='a'"):
        discover(folder)


def test_cache_is_reused_and_modes_do_not_collide(tmp_path):
    calls = []
    fig = _counting_figure(calls)
    first = compute_all(fig, "quick", tmp_path, log=lambda s: None)
    assert calls == [0, 1, 2]
    again = compute_all(fig, "quick", tmp_path, log=lambda s: None)
    assert calls == [0, 1, 2]  # nothing recomputed
    for label in first:
        np.testing.assert_array_equal(first[label]["y"], again[label]["y"])
    compute_all(fig, "full", tmp_path, log=lambda s: None)
    assert calls == [0, 1, 2, 0, 1, 2]  # other parameters, other keys
    names = _files(tmp_path / "count")
    assert len(names) == 12 and not [n for n in names if n.endswith(".tmp")]
    meta = json.loads((tmp_path / "count" / names[0]).read_text())
    assert meta["kwargs"]["n"] in (3, 5) and meta["versions"]["sft"] and meta["arrays"]["y"]["shape"]


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    calls = []
    with pytest.raises(RuntimeError, match="interrupted"):
        compute_all(_counting_figure(calls, fail_at=1), "quick", tmp_path, log=lambda s: None)
    assert calls == [0]
    lines = []
    compute_all(_counting_figure(calls), "quick", tmp_path, log=lines.append)
    assert calls == [0, 1, 2]
    assert "p0: cached" in lines[0] and "computed in" in lines[1]


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")
    monkeypatch.setattr(figures.np, "savez", broken_savez)
    calls = []
    with pytest.raises(OSError, match="disk full"):
        compute_all(_counting_figure(calls), "quick", tmp_path, log=lambda s: None)
    assert _files(tmp_path / "count") == []
    monkeypatch.undo()
    compute_all(_counting_figure(calls), "quick", tmp_path, log=lambda s: None)
    assert calls == [0, 0, 1, 2]


def _corrupt(folder, how):
    """Damage the stored piece p1 of the 'count' figure in ``folder`` in one of several ways."""
    by_piece = {p.name.split("-")[0]: p for p in folder.glob("*.npz")}
    npz, other = by_piece["p1"], by_piece["p2"]
    meta, other_meta = npz.with_suffix(".json"), other.with_suffix(".json")
    if how == "truncated npz":
        npz.write_bytes(npz.read_bytes()[:40])
    elif how == "empty npz":
        npz.write_bytes(b"")
    elif how == "empty json":
        meta.write_text("")
    elif how == "json without key":
        record = json.loads(meta.read_text())
        del record["key"]
        meta.write_text(json.dumps(record))
    elif how == "other piece's npz":
        npz.write_bytes(other.read_bytes())
    elif how == "other piece's npz and json":
        npz.write_bytes(other.read_bytes())
        meta.write_text(other_meta.read_text())
    elif how == "missing json":
        meta.unlink()
    return npz, meta


@pytest.mark.parametrize("how", ["truncated npz", "empty npz", "empty json", "json without key",
                                 "other piece's npz", "other piece's npz and json", "missing json"])
def test_damaged_piece_is_recomputed_and_the_log_names_the_file(tmp_path, how):
    calls, lines = [], []
    fresh = compute_all(_counting_figure(calls), "quick", tmp_path, log=lambda s: None)
    npz, meta = _corrupt(tmp_path / "count", how)
    again = compute_all(_counting_figure(calls), "quick", tmp_path, log=lines.append)
    assert calls == [0, 1, 2, 1]  # only the damaged piece recomputed
    recompute = [line for line in lines if "recomputing" in line]
    assert len(recompute) == 1 and "piece p1" in recompute[0]
    assert str(npz) in recompute[0] or str(meta) in recompute[0]
    for label in fresh:
        np.testing.assert_array_equal(again[label]["y"], fresh[label]["y"])
    lines.clear()
    compute_all(_counting_figure(calls), "quick", tmp_path, log=lines.append)
    assert calls == [0, 1, 2, 1] and all(": cached" in line for line in lines)  # repaired


def test_checksum_and_key_are_stored(tmp_path):
    compute_all(_counting_figure([]), "quick", tmp_path, log=lambda s: None)
    npz = sorted((tmp_path / "count").glob("p0-*.npz"))[0]
    record = json.loads(npz.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(npz.read_bytes()).hexdigest()
    assert record["key"] == {"figure": "count", "piece": "p0", "kwargs": {"i": 0, "n": 3},
                             "code": figures.code_version(_counting_figure([]))}


def test_code_change_recomputes_and_says_so(tmp_path):
    """The code version covers the figure script: editing it recomputes every piece (stale cache);
    the unchanged script reuses the cache."""
    sims = _sims(tmp_path, "toy")
    lines = []
    log = lines.append
    compute_all(discover(sims)["toy"], "quick", tmp_path / "cache", log=log)
    compute_all(discover(sims)["toy"], "quick", tmp_path / "cache", log=log)
    assert sum(": cached" in line for line in lines) == 3
    script = sims / "fig_toy.py"
    script.write_text(script.read_text().replace("* float(i)", "* float(i) + 1.0"))
    lines.clear()
    res = compute_all(discover(sims)["toy"], "quick", tmp_path / "cache", log=log)
    stale = [line for line in lines if "computed by other code" in line]
    assert len(stale) == 3 and ": cached" not in "".join(lines)
    np.testing.assert_array_equal(res["p2"]["y"], np.arange(3) * 2.0 + 1.0)


def test_sft_source_change_recomputes(tmp_path, stand_in_sft_sources):
    calls, lines = [], []
    compute_all(_counting_figure(calls), "quick", tmp_path, log=lines.append)
    (stand_in_sft_sources / "module.py").write_text("x = 2\n")
    compute_all(_counting_figure(calls), "quick", tmp_path, log=lines.append)
    assert calls == [0, 1, 2, 0, 1, 2]
    assert sum("was computed by other code" in line for line in lines) == 3


def test_code_version_covers_the_real_sft_package(monkeypatch):
    monkeypatch.undo()  # the real sft sources
    fig = _counting_figure([])
    assert figures._SFT_DIR == figures.ROOT / "sft"
    assert re.fullmatch("[0-9a-f]{16}", figures.code_version(fig))
    files = {p.name for p in figures._SFT_DIR.rglob("*.py")}
    assert {"figures.py", "conventions.py", "recursion.py"} <= files


SLOW_SCRIPT = '''
import os, time
from pathlib import Path
import numpy as np
from sft.workflow import Figure

def compute(*, i, seconds):
    (Path(os.environ["SFT_TEST_MARKS"]) / f"started{i}").touch()  # tells the test the piece runs
    time.sleep(seconds)
    return dict(y=np.full(2, float(i)))

FIGURE = Figure(name="slow", description="sleeps", quick=dict(seconds=SECONDS), full={},
                pieces=lambda p: {f"p{i}": dict(i=i, seconds=p["seconds"]) for i in range(3)},
                compute=compute, plot=None)
'''


def _interrupted_run(tmp_path, seconds, n_signals):
    """Run ``python -m sft figures --quick`` on a figure of three sleeping pieces in a subprocess,
    send ``n_signals`` SIGINTs once piece p0 has started; returns (process result, cache folder)."""
    import signal
    import time

    sims, marks = tmp_path / "sims", tmp_path / "marks"
    sims.mkdir()
    marks.mkdir()
    (sims / "fig_slow.py").write_text(SLOW_SCRIPT.replace("SECONDS", repr(seconds)))
    env = dict(os.environ, PYTHONPATH=str(figures.ROOT), SFT_TEST_MARKS=str(marks))
    cmd = [sys.executable, "-m", "sft", "figures", "--quick", "--sims", str(sims), "--cache",
           str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (marks / "started0").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    for _ in range(n_signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, sorted(p.name for p in marks.iterdir()), tmp_path / "cache"


def test_ctrl_c_finishes_the_current_piece_and_exits_130(tmp_path):
    code, out, err, started, cache = _interrupted_run(tmp_path, seconds=1.0, n_signals=1)
    assert code == 130, err
    assert "press Ctrl-C again to abort at once" in err and "Traceback" not in err
    assert "interrupted: [slow] stopped before piece 2/3 p1" in err and "rerun" in err
    assert started == ["started0"] and "piece 1/3 p0: computed" in out
    stored = _files(cache / "slow")  # p0 complete and intact, nothing else (no temporary files)
    assert [name.split("-")[0] + Path(name).suffix for name in stored] == ["p0.json", "p0.npz"]
    record = json.loads((cache / "slow" / stored[0]).read_text())
    assert record["sha256"] == hashlib.sha256((cache / "slow" / stored[1]).read_bytes()).hexdigest()


def test_second_ctrl_c_aborts_at_once(tmp_path):
    import signal
    import time

    start = time.monotonic()
    code, out, err, started, cache = _interrupted_run(tmp_path, seconds=60.0, n_signals=2)
    assert code == -signal.SIGINT and time.monotonic() - start < 30  # killed, did not sleep 60 s
    assert started == ["started0"] and not list((cache / "slow").glob("*.json"))


SHARED_CALLS = []


def shared_square(*, n):
    """A shared piece of the tests below (module level, as shared functions must be)."""
    SHARED_CALLS.append(n)
    return dict(y=np.arange(n) ** 2.0)


def test_shared_piece_is_computed_once_for_two_figures(tmp_path):
    SHARED_CALLS.clear()
    calls, lines = [], []
    figs = [dataclasses.replace(_counting_figure(calls), name=name, shared={"sq": shared_square},
                                pieces=lambda p: {"p0": dict(i=0, n=p["n"]), "sq": dict(n=p["n"])})
            for name in ("one", "two")]
    res = [compute_all(fig, "quick", tmp_path, log=lines.append) for fig in figs]
    assert SHARED_CALLS == [3] and calls == [0, 0]
    assert "computed in" in lines[1] and "sq: cached (shared: shared/test_figures.shared_square)" in lines[3]
    np.testing.assert_array_equal(res[1]["sq"]["y"], [0.0, 1.0, 4.0])
    assert _files(tmp_path / "shared" / "test_figures.shared_square")[0].startswith("sq-")
    with pytest.raises(ValueError, match=r"shared piece\(s\) \['nope'\] of figure 'one'"):
        compute_all(dataclasses.replace(figs[0], shared={"nope": shared_square}), "quick", tmp_path)


def test_gd_figures_share_their_theory_piece():
    registry = discover()
    a, b = registry["gd_convergence"], registry["gd_correction"]
    for mode in ("quick", "full"):
        pa, pb = a.pieces(a.params(mode)), b.pieces(b.params(mode))
        assert pa["theory"] == pb["theory"]
    assert figures._shared_owner(a.shared["theory"]).name == \
        figures._shared_owner(b.shared["theory"]).name == "shared/fig_gd_convergence.correction_theory"
    assert figures.code_version(figures._shared_owner(a.shared["theory"])) == \
        figures.code_version(figures._shared_owner(b.shared["theory"]))


def test_piece_label_must_be_a_file_name(tmp_path):
    fig = dataclasses.replace(_counting_figure([]), pieces=lambda p: {"a/b": dict(i=0, n=1)})
    with pytest.raises(ValueError, match="piece label 'a/b'"):
        compute_all(fig, "quick", tmp_path, log=lambda s: None)


def test_select_unknown_name_lists_known_names():
    registry = {"a": None, "b": None}
    assert select(registry, ["b", "a", "b"]) == [None, None]
    with pytest.raises(ValueError, match=r"unknown figure name\(s\) 'zz'; known figures: a, b"):
        select(registry, ["a", "zz"])


def test_cli_list_only_and_unknown(tmp_path, capsys):
    sims = str(_sims(tmp_path, "one", "two"))
    assert cli.main(["figures", "--list", "--sims", sims]) == 0
    out = capsys.readouterr().out
    assert "one" in out and "a toy figure two" in out
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    args = ["figures", "--quick", "--sims", sims, "--out", str(out_dir), "--cache", str(cache)]
    assert cli.main(args + ["--only", "two"]) == 0
    assert _files(out_dir) == ["two.png"] and _files(cache) == ["two"]
    assert "[two] piece 3/3 p2: computed" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert _files(out_dir) == ["one.png", "two.png"]
    assert "[two] piece 1/3 p0: cached" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args + ["--only", "three"])
    assert exit_info.value.code == 2
    assert "unknown figure name(s) 'three'; known figures: one, two" in capsys.readouterr().err


def test_python_dash_m_sft_lists_the_real_figure():
    env = dict(os.environ, PYTHONPATH=str(figures.ROOT))
    done = subprocess.run([sys.executable, "-m", "sft", "figures", "--list"], capture_output=True,
                          text=True, cwd=figures.ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "correlation_depth " in done.stdout


# ----------------------------------------------------------------- the real figure, in pieces
@pytest.fixture(scope="module")
def correlation_depth():
    return discover()["correlation_depth"]


def test_jackknife_matches_delta_method(correlation_depth):
    """Ratio estimator 1 - G12/sqrt(G11 G22) on a large iid sample: the jackknife error equals the
    delta-method standard error grad f . Cov . grad f / S (independent formula) to O(S^-1/2)."""
    mod = sys.modules[correlation_depth.compute.__module__]
    rng = np.random.default_rng(0)
    S = 4000
    g11, g22 = rng.gamma(20, 0.05, S), rng.gamma(20, 0.05, S)
    g12 = 0.6 * np.sqrt(g11 * g22) + 0.05 * rng.normal(size=S)
    G = np.stack([np.stack([g11, g12], -1), np.stack([g12, g22], -1)], -2)  # (S, 2, 2)
    est, err = mod.ratio_one_minus_correlation(G)
    m11, m22, m12 = g11.mean(), g22.mean(), g12.mean()
    assert est == pytest.approx(1 - m12 / np.sqrt(m11 * m22), rel=1e-12)
    grad = np.array([m12 / (2 * m11 * np.sqrt(m11 * m22)), m12 / (2 * m22 * np.sqrt(m11 * m22)),
                     -1 / np.sqrt(m11 * m22)])
    delta = np.sqrt(grad @ np.cov(np.stack([g11, g22, g12])) @ grad / S)
    assert err == pytest.approx(delta, rel=0.05)


def test_real_figure_quick_build(correlation_depth, tmp_path, capsys):
    """``sft figures --quick`` end to end in a tmp folder. Exact checks: layer 1 is deterministic,
    so every ensemble gives 1 - rho^(1) = 1 - (C_b + C_W rho0)/(C_b + C_W) with zero error; deeper
    layers have positive error bars; the metadata records seed, width, sample count and dtype; a
    rerun only loads."""
    args = ["figures", "--quick", "--only", "correlation_depth", "--out", str(tmp_path / "out"),
            "--cache", str(tmp_path / "cache")]
    assert cli.main(args) == 0
    assert _files(tmp_path / "out") == ["correlation_depth.png"]
    folder = tmp_path / "cache" / "correlation_depth"
    metas = sorted(folder.glob("*.json"))
    assert len(metas) == len(correlation_depth.pieces(correlation_depth.quick)) == 5
    for meta_path in metas:
        kw = json.loads(meta_path.read_text())["kwargs"]
        assert {"seed", "width", "n_ensemble", "dtype"} <= set(kw) and kw["dtype"] == "float64"
        with np.load(meta_path.with_suffix(".npz")) as r:
            exact = 1 - (kw["C_b"] + kw["C_W"] * kw["rho0"]) / (kw["C_b"] + kw["C_W"])
            assert r["theory"][0] == pytest.approx(exact, rel=1e-13)
            assert r["sim"][0] == pytest.approx(exact, rel=1e-13)
            assert r["sim_err"][0] < 1e-13 and np.all(r["sim_err"][1:] > 0)
            assert r["sim"].shape == (kw["depth"] + 1,)
    capsys.readouterr()
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count(": cached") == 5


# ----------------------------------------------------------------- thread limits
def test_pieces_run_with_one_blas_thread_and_the_limit_is_validated(tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from sft.threads import blas_thread_limit

    seen = []

    def compute(*, i, n):
        seen.append({p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})
        return dict(y=np.zeros(n))
    fig = dataclasses.replace(_counting_figure([]), compute=compute)
    with threadpool_limits(limits=2, user_api="blas"):  # whatever the session set: 2 outside
        compute_all(fig, "quick", tmp_path, log=lambda s: None)
        outside = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert len(seen) == 3 and all(set(s.values()) == {1} and len(s) >= 2 for s in seen)  # numpy + scipy
    assert set(outside) == {2}  # restored after each piece
    monkeypatch.setenv("SFT_BLAS_THREADS", "3")
    assert blas_thread_limit() == 3 and blas_thread_limit(0) == 0
    for bad in (-1, 1.5, "two", True):
        with pytest.raises(ValueError, match=r"is not allowed: give an integer >= 1"):
            blas_thread_limit(bad)
    monkeypatch.setenv("SFT_BLAS_THREADS", "many")
    with pytest.raises(ValueError, match="SFT_BLAS_THREADS='many' is not allowed"):
        blas_thread_limit()
