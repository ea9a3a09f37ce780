"""Figure gd_correction: the 1/n correction to the mean prediction of gradient-descent ensembles,
theory (:func:`sft.predict.gd_mean_correction`) against trained finite-width networks.

Task (as figure gd_convergence): 1-D regression, P = 6 training points x_a in [-2, 2], y_a = sin(x_a),
M = 25 test points in [-2.4, 2.4], inputs embedded as (x, 1); one hidden layer (erf, C_W = 1.5,
C_b = 0.1), NTK parameterization, float64; k = 200 full-batch GD steps with eta = 0.5 x 2/lambda_max
(half the infinite-width stability limit). Theory: E_n[f_k(x*)] = m_k(x*) + c_k(x*)/n + O(1/n^2).

Theory piece: :func:`fig_gd_convergence.correction_theory` (shared with figure gd_convergence: one
cached computation for both).

Simulation: S networks per width (:func:`sft.sim.train_ensemble`). Each network's deviation is
measured against its own infinite-width linearized prediction f_lin = f_0(x*) + T (y - f_0(X))
(T y = m_k, so E f_lin = m_k exactly at every width): D = f_k(x*) - f_lin, E D = E f_k - m_k, with
a much smaller variance than f_k itself. Error bars: 1 sigma, delete-a-block jackknife (20 blocks).
Left: n E[D](x*) per width (points) and c_k(x*) (line) with its three parts (NTK fluctuations,
dNTK-f0 correlation, ddNTK / dNTK^2 means; thin lines). Right: RMS over x* of E[D] against n (log-log),
with the theory RMS_x(c)/n (line). Inside the data (|x*| <= 2) the points agree with c within their
errors; at the extrapolation edge |x*| >= 2.2 they lie above c up to n = 512 (at x* = 2.4, 8192 networks:
n E[D] = 0.47 +- 0.03, 0.37 +- 0.04, 0.49 +- 0.06 at n = 128, 256, 512 against c = 0.31), where the
O(1/n^2) terms are large (with k = 50: 0.31 +- 0.04 and 0.17 +- 0.05 at n = 128, 256 against c = 0.12).
Run ``python sims/fig_gd_correction.py [--quick]`` or
``sft figures --only gd_correction``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import matplotlib.figure
import numpy as np

from sft.sim import jackknife
from sft.workflow import Figure, run_script
from sft.kernels import nngp_and_ntk
from sft.predict import gd_stability_limit, ntk_gradient_descent
from sft.sim import train_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the same regression task, and the theory piece c_k(x*) shared with figure gd_convergence
from fig_gd_convergence import correction_theory, task_data, theory_piece  # noqa: E402

TASK = dict(P=6, M=25, activation="erf", C_W=1.5, C_b=0.1, n_steps=200, lr_fraction=0.5)
QUICK = dict(widths=[64, 256], n_ensemble=1024, n_nodes=[32, 96], M_theory=25, seed=0, dtype="float64",
             **TASK)
FULL = dict(widths=[32, 64, 128, 256, 512], n_ensemble=2048, n_nodes=[32, 96], M_theory=49, seed=0,
            dtype="float64", **TASK)


def linear_map(P, M, activation, C_W, C_b, n_steps, lr_fraction):
    """(T (M, P) with m_k = T y, eta) of the infinite-width network (sft.kernels.recursion, sft.predict.infinite_width)."""
    x_train, _, x_test = task_data(P, M)
    kw = dict(depth=1, activation=activation, C_W=C_W, C_b=C_b)
    K_tr, T_tr = nngp_and_ntk(x_train, **kw)
    K_x, T_x = nngp_and_ntk(x_test, x_train, **kw)
    K_te, _ = nngp_and_ntk(x_test, **kw)
    eta = lr_fraction * gd_stability_limit(T_tr)
    T = np.stack([ntk_gradient_descent(T_tr, T_x, K_tr, K_x, K_te, e, steps=n_steps, learning_rate=eta).mean
                  for e in np.eye(P)], axis=1)
    return T, eta


def pieces(params):
    """One theory piece (shared with gd_convergence), one piece per width (each with its own seed)."""
    task = {k: params[k] for k in TASK}
    out = {"theory": theory_piece(params)}
    for j, w in enumerate(params["widths"]):
        out[f"n{w}"] = dict(width=w, seed=params["seed"] + j, n_ensemble=params["n_ensemble"],
                            dtype=params["dtype"], **task)
    return out


def compute(*, P, M, activation, C_W, C_b, n_steps, lr_fraction, width, seed, n_ensemble, dtype):
    """Width piece: n E[D](x*) on the M test points, RMS_x E[D] and its noise floor
    sqrt(mean_x se_x^2), jackknife errors. (The theory piece is :func:`correction_theory`.)"""
    T, eta = linear_map(P, M, activation, C_W, C_b, n_steps, lr_fraction)
    x_train, y, x_test = task_data(P, M)
    r = train_ensemble(jax.random.key(seed), x_train, y, x_test, n_ensemble=n_ensemble, widths=[width],
                       activation=activation, C_W=C_W, C_b=C_b, learning_rate=eta, n_steps=n_steps,
                       record_every=n_steps, dtype=dtype)
    ft, fr = (np.asarray(a, dtype=np.float64) for a in (r.test_predictions, r.train_predictions))
    D = ft[:, -1] - (ft[:, 0] - (fr[:, 0] - y) @ T.T)
    nd, nd_err = jackknife(lambda s: width * s.mean(0), D)
    rms, rms_err = jackknife(lambda s: np.sqrt(np.mean(s.mean(0) ** 2)), D)
    floor = np.sqrt(np.mean(D.var(0, ddof=1)) / len(D))
    return dict(nD=nd, nD_err=nd_err, rms=np.float64(rms), rms_err=np.float64(rms_err), floor=np.float64(floor))


def plot(results, params):
    """Left: n (mean - m_k)(x*) per width vs c(x*). Right: RMS_x deviation vs n with RMS(c)/n."""
    fig = matplotlib.figure.Figure(figsize=(11, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    th = results["theory"]
    _, _, x_test = task_data(params["P"], params["M"])
    xt = x_test[:, 0]
    xth = np.linspace(-2.4, 2.4, params["M_theory"])
    xs = np.linspace(-2.0, 2.0, params["P"])
    widths = params["widths"]
    for j, w in enumerate(widths):
        r = results[f"n{w}"]
        shift = (j - (len(widths) - 1) / 2) * 0.025
        ax1.errorbar(xt + shift, r["nD"], yerr=r["nD_err"], fmt="o", ms=3.5, capsize=2, lw=0.8,
                     color=f"C{j}", label=f"trained, n = {w}")
    ax1.plot(xth, th["c"], "-", color="k", lw=2, label=r"theory $c_k(x^*)$")
    for key, style, lab in (("ntk", ":", "NTK fluctuations"), ("dntk", "--", "dNTK-$f_0$"),
                            ("ddntk", "-.", r"ddNTK + dNTK$^2$")):
        ax1.plot(xth, th[key], style, color="0.45", lw=1, label=f"theory part: {lab}")
    ax1.plot(xs, np.zeros_like(xs), "|", color="k", ms=12, mew=1.5, label="training inputs")
    ax1.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax1.set_xlabel("test input $x^*$")
    ax1.set_ylabel(r"$n\,(\mathbb{E}_n f_k(x^*) - m_k(x^*))$")
    ax1.set_title("1/n coefficient of the ensemble mean, theory vs trained networks", fontsize=10)
    ax1.legend(fontsize=7.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.17))
    ax1.grid(True, alpha=0.3)

    n = np.array(widths, dtype=float)
    rms = np.array([results[f"n{w}"]["rms"] for w in widths])
    err = np.array([results[f"n{w}"]["rms_err"] for w in widths])
    c_rms = np.sqrt(np.mean(np.interp(xt, xth, th["c"]) ** 2))  # on the simulated test points
    nn = np.geomspace(n[0] / 1.3, n[-1] * 1.3, 50)
    ax2.errorbar(n, rms, yerr=err, fmt="o", color="C0", capsize=3, label="trained ensembles")
    ax2.plot(nn, c_rms / nn, "-", color="k", label=r"theory RMS$_{x^*}(c_k)\,/\,n$")
    ax2.plot(n, [results[f"n{w}"]["floor"] for w in widths], "--", color="0.5",
             label="noise floor of the estimate")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xticks(n, [f"{w:d}" for w in widths])
    ax2.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax2.set_xlabel("hidden width $n$")
    ax2.set_ylabel(r"RMS$_{x^*}$ $(\mathbb{E}_n f_k - m_k)$")
    ax2.set_title("mean deviation from the infinite-width predictor", fontsize=10)
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8.5)
    fig.suptitle(
        f"Finite-width correction to gradient-descent ensembles ({params['activation']}, 1 hidden layer, "
        f"$C_W$ = {params['C_W']}, $C_b$ = {params['C_b']}; sin on [-2, 2], {params['P']} training points)\n"
        rf"{params['n_steps']} GD steps, $\eta$ = {float(th['eta']):.3g} = {params['lr_fraction']} x stability "
        f"limit; {params['n_ensemble']} networks per width, float64, jackknife 1$\\sigma$ "
        "(paired with each network's linearized prediction)", fontsize=10)
    return fig


FIGURE = Figure(
    name="gd_correction",
    description="1/n correction to the mean of trained GD ensembles (one hidden layer): theory vs simulation",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot,
    shared={"theory": correction_theory})

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
