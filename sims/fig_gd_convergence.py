"""Figure gd_convergence: finite-width gradient-descent ensembles approach the infinite-width NTK
predictor, with deviations that shrink like a power of the width n (log-log, fitted slope).

Task: 1-D regression, P = 6 training points x_a in [-2, 2] with y_a = sin(x_a), M = 20 test points in
[-2.4, 2.4]; inputs embedded in d = 2 as (x, 1) (the constant coordinate acts as an input bias). One
hidden layer (erf, C_W = 1.5, C_b = 0.1 in every layer), NTK parameterization, float64; full-batch
gradient descent on L = 1/2 sum_a (f(x_a) - y_a)^2 with eta = 0.5 * 2 / lambda_max(Theta_train) (half
the infinite-width stability limit, :func:`sft.predict.gd_stability_limit`), k = 200 steps.

Theory: :func:`sft.predict.ntk_gradient_descent` (mean m and covariance C over initializations of
the linearized infinite-width network after k steps; kernels from :func:`sft.kernels.nngp_and_ntk`).
Simulation: S networks per width trained by :func:`sft.sim.train_ensemble`; test predictions at
step k give the ensemble mean m_hat and covariance C_hat (unbiased, 1/(S-1)).

Plotted (points, delete-a-block jackknife over networks, 20 blocks, 1 sigma):
    mean deviation  D_m = sqrt(1/M sum_m (m_hat_m - m_m)^2),
    cov deviation   D_C = ||C_hat - C||_F / ||C||_F.
Noise floors (dashed): their values for infinite-width networks with S samples, D_m^2 = tr C / (M S)
and D_C^2 = sum_ij (C_ii C_jj + C_ij^2) / ((S - 1) ||C||_F^2) (Gaussian f, Wishart C_hat). Power law
(line): weighted least squares of log D against log n using only widths with D > 3 x floor (the
others are drawn hollow); the slope and its 1-sigma error (from the fit covariance) are in the legend.
Theory coefficient (mean panel, solid black line): D_m = RMS_x(c_k) / n with c_k(x*) the 1/n correction of
the ensemble mean, E_n f_k = m_k + c_k / n + O(1/n^2), from :func:`sft.predict.gd_mean_correction`
(:func:`correction_theory`, on M_theory points, interpolated to the M test points; one cached piece
shared with figure gd_correction).
Run ``python sims/fig_gd_convergence.py [--quick]`` or ``sft figures --only gd_convergence``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.sim import jackknife
from sft.workflow import Figure, run_script
from sft.predict import gd_mean_correction
from sft.kernels import nngp_and_ntk
from sft.predict import gd_stability_limit, ntk_gradient_descent
from sft.sim import train_ensemble

TASK = dict(P=6, M=20, activation="erf", C_W=1.5, C_b=0.1, n_steps=200, lr_fraction=0.5)
QUICK = dict(widths=[32, 64, 128], n_ensemble=512, seed=0, dtype="float64", n_nodes=[32, 96], M_theory=25,
             **TASK)
FULL = dict(widths=[32, 64, 128, 256, 512], n_ensemble=2048, seed=0, dtype="float64", n_nodes=[32, 96],
            M_theory=49, **TASK)
THEORY_KEYS = ("P", "activation", "C_W", "C_b", "n_steps", "lr_fraction", "n_nodes", "M_theory")
FLOOR_FACTOR = 3.0


def task_data(P, M):
    """x_train (P, 2), y_train (P,), x_test (M, 2): points x embedded as (x, 1), labels sin(x)."""
    xs, xt = np.linspace(-2.0, 2.0, P), np.linspace(-2.4, 2.4, M)
    embed = lambda x: np.stack([x, np.ones_like(x)], axis=1)
    return embed(xs), np.sin(xs), embed(xt)


def theory(P, M, activation, C_W, C_b, n_steps, lr_fraction):
    """(mean (M,), cov (M, M), T (M, P), eta) of the infinite-width one-hidden-layer network after n_steps of GD."""
    x_train, y, x_test = task_data(P, M)
    kw = dict(depth=1, activation=activation, C_W=C_W, C_b=C_b)
    K_tr, T_tr = nngp_and_ntk(x_train, **kw)
    K_x, T_x = nngp_and_ntk(x_test, x_train, **kw)
    K_te, _ = nngp_and_ntk(x_test, **kw)
    eta = lr_fraction * gd_stability_limit(T_tr)
    gd = lambda labels: ntk_gradient_descent(T_tr, T_x, K_tr, K_x, K_te, labels, steps=n_steps,
                                             learning_rate=eta)
    out = gd(y)
    T = np.stack([gd(e).mean for e in np.eye(P)], axis=1)  # mean is linear in y: T = (M, P)
    return out.mean, out.cov, T, eta


def correction_theory(*, P, activation, C_W, C_b, n_steps, lr_fraction, n_nodes, M_theory):
    """c_k(x*) (the 1/n coefficient of the GD ensemble mean, :func:`sft.predict.gd_mean_correction`)
    and its three parts (ntk, dntk, ddntk) on M_theory test points in [-2.4, 2.4] after n_steps, and
    eta. A shared piece: figures gd_convergence and gd_correction both use it (computed once)."""
    x_train, y, x_test = task_data(P, M_theory)
    T_tr = nngp_and_ntk(x_train, depth=1, activation=activation, C_W=C_W, C_b=C_b)[1]
    eta = lr_fraction * gd_stability_limit(T_tr)
    c = gd_mean_correction(x_train, y, x_test, activation=activation, C_W=C_W, C_b=C_b,
                           learning_rate=eta, n_steps=n_steps, record_every=n_steps,
                           n_nodes=tuple(n_nodes))
    return dict(c=c.correction[-1], ntk=c.ntk[-1], dntk=c.dntk[-1], ddntk=c.ddntk[-1],
                eta=np.float64(eta))


def theory_piece(params):
    """The kwargs of the shared :func:`correction_theory` piece."""
    return {k: params[k] for k in THEORY_KEYS}


def pieces(params):
    """One piece per width, each with its own seed; the shared theory piece."""
    keys = ("P", "M", "activation", "C_W", "C_b", "n_steps", "lr_fraction", "n_ensemble", "dtype")
    out = {f"n{w}": dict(width=w, seed=params["seed"] + j, **{k: params[k] for k in keys})
           for j, w in enumerate(params["widths"])}
    out["theory"] = theory_piece(params)
    return out


def deviations(f, mean, cov):
    """(D_m, D_C) of test predictions f (S, M) from the theory mean (M,) and covariance (M, M)."""
    d = f.mean(0) - mean
    return np.array([np.sqrt(np.mean(d ** 2)), np.linalg.norm(np.cov(f.T) - cov) / np.linalg.norm(cov)])


def compute(*, P, M, activation, C_W, C_b, n_steps, lr_fraction, width, n_ensemble, seed, dtype):
    """Deviations of the trained ensemble from theory at step n_steps, jackknife errors, noise floors."""
    mean, cov, T, eta = theory(P, M, activation, C_W, C_b, n_steps, lr_fraction)
    x_train, y, x_test = task_data(P, M)
    r = train_ensemble(jax.random.key(seed), x_train, y, x_test, n_ensemble=n_ensemble, widths=[width],
                       activation=activation, C_W=C_W, C_b=C_b, learning_rate=eta, n_steps=n_steps,
                       record_every=n_steps, dtype=dtype)
    f_test, f_train = (np.asarray(a, dtype=np.float64) for a in (r.test_predictions, r.train_predictions))
    f = f_test[:, -1, :]
    est, err = jackknife(lambda s: deviations(s, mean, cov), f)
    S, c2 = n_ensemble, np.sum(cov ** 2)
    floor = np.array([np.sqrt(np.trace(cov) / (M * S)),
                      np.sqrt((np.trace(cov) ** 2 + c2) / ((S - 1) * c2))])
    # paired control variate: each network's own linearized prediction from its f_0 (mean T y, cov C)
    f_lin = f_test[:, 0, :] - (f_train[:, 0, :] - y) @ T.T
    pair = np.concatenate([f, f_lin], axis=1)
    delta = lambda s: np.concatenate([s[:, :M].mean(0) - s[:, M:].mean(0),
                                      (np.cov(s[:, :M].T) - np.cov(s[:, M:].T)).ravel()])
    d_est, d_err = jackknife(delta, pair)
    cv = lambda d: np.array([np.sqrt(np.mean(d[:M] ** 2)), np.linalg.norm(d[M:]) / np.sqrt(c2)])
    cv_est, cv_err = jackknife(lambda s: cv(delta(s)), pair)
    cv_floor = np.array([np.sqrt(np.mean(d_err[:M] ** 2)), np.sqrt(np.sum(d_err[M:] ** 2) / c2)])
    return dict(dev=est, dev_err=err, floor=floor, eta=np.float64(eta),
                cv=cv_est, cv_err=cv_err, cv_floor=cv_floor,
                final_loss=np.asarray(r.train_loss)[:, -1].mean())


def fit_power_law(n, y, err):
    """(slope, slope error, prefactor) of y = A n^b by weighted least squares in log-log."""
    X = np.stack([np.ones_like(n), np.log(n)], axis=1)
    w = (y / err) ** 2  # 1 / Var(log y)
    cov = np.linalg.inv(X.T @ (X * w[:, None]))
    a, b = cov @ (X.T @ (w * np.log(y)))
    return b, np.sqrt(cov[1, 1]), np.exp(a)


def plot(results, params):
    """Two log-log panels, mean and covariance deviation against width; points, floor, fitted power law."""
    fig = matplotlib.figure.Figure(figsize=(10.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    n = np.array(params["widths"], dtype=float)
    rs = [results[f"n{w}"] for w in params["widths"]]
    titles = [r"mean: RMS$_{x^*}$ (ensemble mean $-$ theory mean)",
              r"covariance: $\|\hat C - C\|_F\, /\, \|C\|_F$"]
    for i, (ax, title) in enumerate(zip(axes, titles)):
        y = np.array([r["cv"][i] for r in rs])
        e = np.array([r["cv_err"][i] for r in rs])
        floor = np.array([r["cv_floor"][i] for r in rs])
        use = y > FLOOR_FACTOR * floor
        ax.errorbar(n * 1.06, [r["dev"][i] for r in rs], yerr=[r["dev_err"][i] for r in rs], fmt="x",
                    color="0.55", ms=5, capsize=2, lw=0.8, label="plain estimator (no control variate)")
        ax.plot(n, [r["floor"][i] for r in rs], ":", color="0.55", label="its noise floor")
        ax.errorbar(n[use], y[use], yerr=e[use], fmt="o", color="C0", capsize=3, label="ensemble, control variate (fitted)")
        if (~use).any():
            ax.errorbar(n[~use], y[~use], yerr=e[~use], fmt="o", color="C0", mfc="white", capsize=3,
                        label=f"ensemble (not fitted: < {FLOOR_FACTOR:g} x floor)")
        ax.plot(n, floor, "--", color="0.4", label="noise floor (control variate)")
        if use.sum() >= 2:
            b, db, A = fit_power_law(n[use], y[use], e[use])
            nn = np.geomspace(n[0] / 1.2, n[-1] * 1.2, 50)
            ax.plot(nn, A * nn ** b, "-", color="C1", label=rf"fit $\propto n^{{{b:.2f} \pm {db:.2f}}}$")
        else:
            ax.text(0.03, 0.03, "fewer than 2 widths above the floor: no fit", transform=ax.transAxes,
                    fontsize=9)
        if i == 0:
            nn = np.geomspace(n[0] / 1.2, n[-1] * 1.2, 50)
            x_test = task_data(params["P"], params["M"])[2][:, 0]
            x_theory = np.linspace(-2.4, 2.4, params["M_theory"])
            c_rms = np.sqrt(np.mean(np.interp(x_test, x_theory, results["theory"]["c"]) ** 2))
            ax.plot(nn, c_rms / nn, "-", color="k", lw=1.2,
                    label=rf"theory RMS$_{{x^*}}(c_k)/n$, $c$ from the 1/n expansion")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(n, [f"{w:d}" for w in params["widths"]])
        ax.minorticks_off()
        ax.set_xlabel("hidden width $n$")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8.5)
    eta = float(rs[0]["eta"])
    fig.suptitle(
        f"Trained ensembles approach the infinite-width NTK gradient-descent predictor "
        f"({params['activation']}, 1 hidden layer, $C_W$ = {params['C_W']}, $C_b$ = {params['C_b']})\n"
        f"sin on [-2, 2]: {params['P']} train / {params['M']} test points, {params['n_steps']} GD steps, "
        rf"$\eta$ = {eta:.3g} = {params['lr_fraction']} x stability limit; "
        f"{params['n_ensemble']} networks per width, float64, jackknife 1$\\sigma$", fontsize=10)
    return fig


FIGURE = Figure(
    name="gd_convergence",
    description="deviation of trained GD ensembles from the infinite-width NTK predictor vs width (log-log fit)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot,
    shared={"theory": correction_theory})

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
