"""Figure circuit_background: a random-feature background conditioned on the circuits' inputs.

Model (sft.circuits.gaussian_equivalence): f(x) = sum_k b_k sigma(u_k . x) + f_bg(x),
f_bg(x) = N^{-1/2} sum_i a_i tanh(w_i . x), N = 16, a_i ~ N(a_mean = 0.5, 1), d = 32, circuits u_k = e_k.
Three backgrounds, columns of the figure:
    untilted:      w_i ~ N(0, I/d)                 (f_bg feels s only through |x|)
    one circuit:   w_i = beta u_1 + P_perp g_i / sqrt(d), beta = 1.2, for every i (tilt matrix B = beta 1_N e_1^T)
    two circuits:  half the neurons lean on u_1, half on u_2 (B rows (beta, 0) and (0, beta)); plotted vs s_1
                   at three fixed values of s_2.
Inputs: x = U s + x_perp, x_perp uniform on the sphere of radius sqrt(d - K) in the orthogonal complement
(so q_perp = |x_perp|^2 / d is the same for every input and the theory at fixed s is exact, not a bin average).

Theory (lines): exact conditional moments over the background weights, E[f_bg | s] and Var[f_bg | s]
(:func:`sft.circuits.background_moments_multi`, 1-d quadrature per tilt row); dotted: the
multivariate Mehler series truncated at total degree < 30 (:func:`background_moments_hermite_multi`), an
independent method; dashed: the Gaussian-equivalence model sigma -> mu0 + mu1 z + mu* xi with z | s ~
N(rho . s, 1 - |rho|^2), i.e. mean sqrt(N) a_mean (mu0 + mu1 rho . s) and second moment
(mu0 + mu1 rho . s)^2 + mu1^2 (1 - |rho|^2) + mu*^2 (linear polarization only).
Simulation (points): at each s, P inputs with FRESH background weights and readouts (JAX,
:func:`sft.circuits.simulate_background`, float64); sample mean +- standard error and sample
variance +- standard error (std of (f - mean)^2 / sqrt P).
Run ``python sims/fig_circuit_background.py [--quick]`` or ``sft figures --only circuit_background``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.workflow import Figure, run_script
from sft.circuits import (background_moments_hermite_multi, background_moments_multi,
                                      equivalence_constants, simulate_background)

MODEL = dict(activation="tanh", d=32, width=16, beta=1.2, a_mean=0.5, a_var=1.0, s2_values=[0.0, 1.0, 2.0])
QUICK = dict(n_grid=7, n_inputs=600, seed=0, dtype="float64", **MODEL)
FULL = dict(n_grid=13, n_inputs=4000, seed=0, dtype="float64", **MODEL)
S_MAX = 3.0


def tilt_matrix(case, width, beta):
    """(N, K) tilt matrix B of each case; None for the untilted background."""
    if case == "untilted":
        return None
    if case == "one":
        return np.tile([[beta]], (width, 1))
    return np.array([[beta, 0.0]] * (width // 2) + [[0.0, beta]] * (width - width // 2))


def grid_points(case, n_grid, s2_values):
    """Circuit inputs s (G, K) where the background is sampled."""
    s1 = np.linspace(-S_MAX, S_MAX, n_grid)
    if case != "two":
        return s1[:, None]
    return np.array([[a, b] for b in s2_values for a in s1])


def inputs(key, s, d, P):
    """P inputs x = U s + x_perp (U = first K axes), x_perp uniform on the sphere of radius sqrt(d - K)."""
    K = s.size
    g = np.asarray(jax.random.normal(key, (P, d - K), dtype=np.float64))
    perp = g / np.linalg.norm(g, axis=1, keepdims=True) * np.sqrt(d - K)
    return np.concatenate([np.tile(s, (P, 1)), perp], axis=1)


def gaussian_equivalence(activation, s, B, q_perp, a_mean, a_var):
    """(mean, variance) of the Gaussian-equivalent background: sigma_i -> mu0 + mu1 z_i + mu* xi_i (docstring)."""
    m1, m2 = [], []
    for row in B:
        q = row @ row + q_perp
        mu0, mu1, mus = (float(v) for v in equivalence_constants(activation, q=q))
        lin = mu0 + mu1 * (s @ row) / np.sqrt(q)
        m1.append(lin)
        m2.append(lin ** 2 + mu1 ** 2 * (1 - row @ row / q) + mus ** 2)
    m1, m2 = np.stack(m1, -1), np.stack(m2, -1)
    N = len(B)
    return a_mean * m1.sum(-1) / np.sqrt(N), ((a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2).sum(-1) / N


def pieces(params):
    """One piece per background (untilted, one circuit, two circuits), each with its own seed."""
    keys = ("activation", "d", "width", "beta", "a_mean", "a_var", "s2_values", "n_grid", "n_inputs", "dtype")
    return {case: dict(case=case, seed=params["seed"] + j, **{k: params[k] for k in keys})
            for j, case in enumerate(("untilted", "one", "two"))}


def compute(*, case, activation, d, width, beta, a_mean, a_var, s2_values, n_grid, n_inputs, seed, dtype):
    """Simulated (mean, se, variance, se) at each grid s, and theory lines on a fine grid."""
    B = tilt_matrix(case, width, beta)
    pts = grid_points(case, n_grid, s2_values)
    K = pts.shape[1]
    U = np.eye(d)[:, :K]
    kx, kb = jax.random.split(jax.random.key(seed))
    x = np.concatenate([inputs(jax.random.fold_in(kx, j), p, d, n_inputs) for j, p in enumerate(pts)])
    f = simulate_background(kb, activation, x, circuits=U, tilt=B, width=width, a_mean=a_mean,
                            a_var=a_var)[0].reshape(len(pts), n_inputs)        # one compilation
    dev2 = (f - f.mean(1, keepdims=True)) ** 2
    sim = np.stack([f.mean(1), f.std(1, ddof=1), dev2.mean(1) * n_inputs / (n_inputs - 1), dev2.std(1, ddof=1)], 1)
    sim[:, [1, 3]] /= np.sqrt(n_inputs)
    # theory on a fine grid (same layout as the simulation grid)
    fine = grid_points(case, 241, s2_values)
    q_perp = (d - K) / d
    if B is None:  # untilted: w . x ~ N(0, |x|^2 / d), a zero tilt row with q_perp = |x|^2 / d
        zero = np.zeros((width, 1))
        qx = (fine[:, 0] ** 2 + d - 1) / d
        exact = background_moments_multi(activation, fine, tilt=zero, q_perp=qx, a_mean=a_mean, a_var=a_var)
        ge = np.array([gaussian_equivalence(activation, p, zero, q, a_mean, a_var) for p, q in zip(fine, qx)]).T
        series = exact  # no s-dependence but through |x|: nothing to expand
    else:
        exact = background_moments_multi(activation, fine, tilt=B, q_perp=q_perp, a_mean=a_mean, a_var=a_var)
        series = background_moments_hermite_multi(activation, fine, tilt=B, q_perp=q_perp, order=30,
                                                  a_mean=a_mean, a_var=a_var)
        ge = gaussian_equivalence(activation, fine, B, q_perp, a_mean, a_var)
    return dict(s=pts, mean=sim[:, 0], mean_se=sim[:, 1], var=sim[:, 2], var_se=sim[:, 3], s_fine=fine,
                exact_mean=exact[0], exact_var=exact[1], series_mean=series[0], series_var=series[1],
                ge_mean=ge[0], ge_var=ge[1])


def plot(results, params):
    """2 x 3: rows (conditional mean, conditional variance), columns (untilted, one circuit, two circuits)."""
    fig = matplotlib.figure.Figure(figsize=(13, 7.6), layout="constrained")
    ax = fig.subplots(2, 3, sharey="row")
    titles = {"untilted": r"untilted: $w_i \sim \mathcal{N}(0, I/d)$",
              "one": rf"tilted toward $u_1$: $w_i = {params['beta']:g}\, u_1 + P_\perp g_i/\sqrt{{d}}$",
              "two": rf"two circuits: half $\to u_1$, half $\to u_2$ ($\beta$ = {params['beta']:g})"}
    for j, case in enumerate(("untilted", "one", "two")):
        r = results[case]
        s, fine = r["s"], r["s_fine"]
        slices = params["s2_values"] if case == "two" else [None]
        for i, s2 in enumerate(slices):
            sel = slice(None) if s2 is None else np.isclose(s[:, 1], s2)
            fsel = slice(None) if s2 is None else np.isclose(fine[:, 1], s2)
            col = f"C{i}" if case == "two" else "C0"
            tag = "" if s2 is None else rf", $s_2$ = {s2:g}"
            for row, (m, name) in enumerate((("mean", "mean"), ("var", "var"))):
                a = ax[row, j]
                a.plot(fine[fsel, 0], r[f"exact_{name}"][fsel], "-", color=col, lw=1.6, label="exact theory" + tag)
                if case != "untilted":
                    a.plot(fine[fsel, 0], r[f"series_{name}"][fsel], ":", color="k", lw=1.2,
                           label="Mehler series, degree < 30" if i == 0 else None)
                a.plot(fine[fsel, 0], r[f"ge_{name}"][fsel], "--", color=col, lw=1, alpha=0.8,
                       label="Gaussian equivalence (linear)" if i == 0 else None)
                a.errorbar(s[sel, 0], r[m][sel], r[f"{m}_se"][sel], fmt="o", color=col, ms=4.5, capsize=2.5,
                           label="simulation" + tag)
        ax[0, j].set_title(titles[case], fontsize=10)
    ax[0, 0].text(0.5, 0.75, "mean 0: tanh is odd and, untilted,\n" r"$w_i \cdot x \sim \mathcal{N}(0, |x|^2/d)$ for every $s$",
                  transform=ax[0, 0].transAxes, ha="center", fontsize=8.5, color="0.3")
    ax[0, 0].set_ylabel(r"conditional mean $E[f_{\rm bg} \mid s]$")
    ax[1, 0].set_ylabel(r"conditional variance ${\rm Var}[f_{\rm bg} \mid s]$")
    for (i, j), a in np.ndenumerate(ax):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower right" if i == 0 else "upper center")
    for a in ax[1]:
        a.set_xlabel(r"circuit input $s_1 = u_1 \cdot x$")
    fig.suptitle(
        rf"Random-feature background given the circuits' inputs: $f_{{\rm bg}} = N^{{-1/2}} \sum_i a_i \tanh(w_i \cdot x)$, "
        rf"N = {params['width']}, d = {params['d']}, $a_i \sim \mathcal{{N}}({params['a_mean']:g}, {params['a_var']:g})$"
        "\n"
        rf"points: {params['n_inputs']} inputs per $s$ with fresh background weights (JAX, float64), "
        r"mean / variance $\pm$ 1 standard error; lines: theory over the background weights", fontsize=10)
    return fig


FIGURE = Figure(
    name="circuit_background",
    description="conditional mean and variance of a random-feature background given circuit inputs (untilted, tilted, two circuits)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
