"""Figure llc: the local learning coefficient of trained networks against n beta and against width,
with the wide-network (NTK Gaussian) prediction.

Task: n = 8 training inputs x_a ~ N(0, I_2) (numpy seed 0), labels y_a = sin(x_a1) + 0.5 x_a2. One
hidden layer, tanh, C_W = 1.5, C_b = 0.1, NTK parameterization, float64. w* is trained by full-batch
gradient descent on L_n = mean_a (f(x_a) - y_a)^2 / 2 from the initialization drawn with
jax.random.key(seed) (learning rate 1 / h_max, h_max the top eigenvalue of J^T J / n at init;
``train_steps`` steps); the final L_n(w*) is recorded.

Sampling: :func:`sft.sim.sample_tlbp` of p_t ∝ exp(-nbeta L_n - gamma |w - w*|^2/2), ``method``
"mala" (exact; the default in both modes) or "sgld" (full batch), all chains from w*, step
eps = ``step_fraction`` / max(nbeta h_max + gamma, gamma sqrt(D/8)) (h_max the top eigenvalue of
J^T J / n at w*, D the number of parameters: MALA started at the mode of a D-dimensional Gaussian of
precision gamma accepts with probability ~ exp(-(eps gamma)^2 D / 8), so eps gamma <~ sqrt(8/D)); LLC by
:func:`sft.sim.llc_from_samples`, 1 sigma between-chain error bars.
Theory: :func:`sft.sim.ntk_llc` from the empirical NTK Theta = J J^T at w* (solid, the weight-space
Gaussian of the linearized network), and the function-space Gaussian :func:`sft.sim.function_space_llc`
(dashed: the infinite-width limit at fixed gamma, from ``fs_samples`` draws of the outputs f(w* + d),
d ~ N(0, I/gamma), jax.random.key(seed + 2000); band = 1 sigma jackknife). For SGLD also the
same Gaussian with SGLD's step-size bias, :func:`sft.sim.quadratic_llc` with ``step_size`` on
J^T J / n (dotted), the like-for-like reference for SGLD points. Panel (c): points minus the
like-for-like Gaussian reference, the part beyond the weight-space Gaussian, with the function-space
prediction of it (dashed).

Panel (a): width ``width_a``, gamma = ``gamma``, nbeta on a grid (the default n / log n marked).
Panel (b): nbeta = n / log n (beta = 1/log n), gamma = ``gamma``, widths ``widths``.
Panel (c): points minus theory of panel (b), and the same for each gamma in ``gammas_c`` (full mode:
gamma = 10), to separate the dependence on width from the dependence on the localization gamma.
Run ``python sims/fig_llc.py [--quick]`` or ``sft figures --only llc``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np

from sft.sim import (apply, default_nbeta, function_space_llc_from_samples, init_params, llc_from_samples,
                     network_loss, ntk_llc, output_pushforward, quadratic_llc, sample_tlbp)
from sft.workflow import Figure, run_script

TASK = dict(n=8, activation="tanh", C_W=1.5, C_b=0.1, gamma=1.0, train_steps=3000, method="mala", step_fraction=0.3,
            dtype="float64")
QUICK = dict(widths=[32, 256], gammas_c=[], width_a=128, nbetas=[1.0, 100.0], n_chains=16,
             n_steps=1000, burn_in=200, seed=0, fs_samples=8000, **TASK)
FULL = dict(widths=[16, 32, 64, 128, 256, 512, 1024], gammas_c=[10.0], width_a=128,
            nbetas=[0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0], n_chains=64, n_steps=4000,
            burn_in=1000, seed=0, fs_samples=40000, **TASK)


def task_data(n):
    x = np.random.default_rng(0).normal(size=(n, 2))
    return x, np.sin(x[:, 0]) + 0.5 * x[:, 1]


def trained_problem(*, n, width, activation, C_W, C_b, train_steps, seed):
    """(NetworkLoss at the trained w*, NTK (n, n) at w*, J (n, D))."""
    x, y = task_data(n)
    kw = dict(activation=activation, C_W=C_W, C_b=C_b)
    p = [(w[0], b[0]) for w, b in init_params(jax.random.key(seed), n_ensemble=1, in_dim=2, widths=[width])]
    prob = network_loss(p, x, y, **kw)
    xj = jnp.asarray(x)
    jac = jax.jit(jax.jacrev(lambda w: apply(prob.unravel(w), xj, **kw)[:, 0]))
    J0 = jac(prob.w_star)
    lr = 1.0 / float(jnp.linalg.eigvalsh(J0 @ J0.T / n).max())
    grad = jax.grad(lambda w: prob.loss(w, prob.data))
    w = jax.jit(lambda w0: jax.lax.fori_loop(0, train_steps, lambda _, w: w - lr * grad(w), w0))(prob.w_star)
    prob = prob._replace(w_star=w)
    J = np.asarray(jac(w))
    return prob, J @ J.T, J


def llc_point(prob, theta, J, *, n, nbeta, gamma, method, step_fraction, n_chains, n_steps, burn_in,
              seed, outputs):
    """(llc, stderr, rhat, NTK Gaussian, like-for-like Gaussian reference, eps, function-space Gaussian,
    its stderr) at one (network, nbeta); ``outputs`` (S, n) draws of f(w* + d), d ~ N(0, I/gamma)."""
    h_max = float(np.linalg.eigvalsh(theta).max()) / n
    eps = step_fraction / max(nbeta * h_max + gamma, gamma * math.sqrt(J.shape[1] / 8))
    r = sample_tlbp(prob.loss, prob.w_star, jax.random.key(seed + 1000), data=prob.data, nbeta=nbeta,
                    gamma=gamma, method=method, step_size=eps, n_chains=n_chains, n_steps=n_steps, burn_in=burn_in,
                    thin=4)
    est = llc_from_samples(r)
    gauss = ntk_llc(theta, n=n, nbeta=nbeta, gamma=gamma)
    ref = gauss if method == "mala" else quadratic_llc(J.T @ J / n, nbeta=nbeta, gamma=gamma, step_size=eps)
    fs = function_space_llc_from_samples(outputs, np.asarray(prob.data[1][:, 0]), n=n, nbeta=nbeta,
                                         loss_star=float(prob.loss(prob.w_star, prob.data)))
    return np.array([est.llc, est.stderr, est.rhat, gauss, ref, eps, *fs])


def output_draws(prob, *, activation, C_W, C_b, gamma, fs_samples, seed):
    """(fs_samples, n) outputs on the training inputs at w* + d, d ~ N(0, I/gamma)."""
    x = prob.data[0]
    f = lambda w: apply(prob.unravel(w), x, activation=activation, C_W=C_W, C_b=C_b)[:, 0]
    return output_pushforward(f, prob.w_star, gamma=gamma, key=jax.random.key(seed + 2000), n_samples=fs_samples)


def pieces(params):
    keys = ("n", "activation", "C_W", "C_b", "gamma", "train_steps", "method", "step_fraction", "n_chains",
            "n_steps", "burn_in", "seed", "fs_samples", "dtype")
    common = {k: params[k] for k in keys}
    out = {f"width{w}": dict(width=w, nbetas=[None], **common) for w in params["widths"]}
    for g in params["gammas_c"]:
        out.update({f"width{w}_gamma{g:g}": dict(width=w, nbetas=[None], **{**common, "gamma": g})
                    for w in params["widths"]})
    out["nbeta_scan"] = dict(width=params["width_a"], nbetas=list(params["nbetas"]), **common)
    return out


def compute(*, n, width, nbetas, activation, C_W, C_b, gamma, train_steps, method, step_fraction, n_chains,
            n_steps, burn_in, seed, fs_samples, dtype):
    """Rows of :func:`llc_point` per nbeta (None: n / log n)."""
    assert dtype == "float64"
    prob, theta, J = trained_problem(n=n, width=width, activation=activation, C_W=C_W, C_b=C_b,
                                     train_steps=train_steps, seed=seed)
    nb = np.array([default_nbeta(n) if b is None else b for b in nbetas], dtype=float)
    outputs = output_draws(prob, activation=activation, C_W=C_W, C_b=C_b, gamma=gamma, fs_samples=fs_samples,
                           seed=seed)
    rows = [llc_point(prob, theta, J, n=n, nbeta=float(b), gamma=gamma, method=method,
                      step_fraction=step_fraction,
                      n_chains=n_chains, n_steps=n_steps, burn_in=burn_in, seed=seed, outputs=outputs) for b in nb]
    dense = np.geomspace(nb.min() / 2, nb.max() * 2, 60)
    loss_star = float(prob.loss(prob.w_star, prob.data))
    y = np.asarray(prob.data[1][:, 0])
    return dict(nbeta=nb, rows=np.array(rows), loss_star=np.float64(loss_star),
                dense_nbeta=dense, dense_theory=np.array([ntk_llc(theta, n=n, nbeta=b, gamma=gamma)
                                                          for b in dense]),
                dense_function_space=np.array([function_space_llc_from_samples(
                    outputs, y, n=n, nbeta=b, loss_star=loss_star) for b in dense[::3]]))


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(11, 4.6), layout="constrained")
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    a = results["nbeta_scan"]
    ax_a.plot(a["dense_nbeta"], a["dense_theory"], "-", color="k", label="NTK Gaussian (theory)")
    fs = a["dense_function_space"]
    ax_a.plot(a["dense_nbeta"][::3], fs[:, 0], "--", color="C1", label="function-space Gaussian (theory)")
    ax_a.fill_between(a["dense_nbeta"][::3], fs[:, 0] - fs[:, 1], fs[:, 0] + fs[:, 1], color="C1", alpha=0.3, lw=0)
    sgld = params["method"] == "sgld"
    if sgld:
        ax_a.plot(a["nbeta"], a["rows"][:, 4], ":", marker="_", color="0.4", label="same, with SGLD step bias")
    ax_a.errorbar(a["nbeta"], a["rows"][:, 0], yerr=a["rows"][:, 1], fmt="o", color="C0", capsize=3,
                  label=f"{params['method'].upper()}, trained network")
    ax_a.axvline(default_nbeta(params["n"]), color="C3", lw=0.8, ls="--", label=r"$n\beta = n/\log n$")
    ax_a.axhline(params["n"] / 2, color="0.7", lw=0.8)
    ax_a.set_xscale("log")
    ax_a.set_xlabel(r"$n\beta = 1/t$")
    ax_a.set_ylabel(r"$\hat\lambda$")
    ax_a.set_title(f"(a) width {params['width_a']}, $\\gamma$ = {params['gamma']}", fontsize=10)
    ax_a.legend(fontsize=8)
    w = np.array(params["widths"], dtype=float)
    rows = np.array([results[f"width{k}"]["rows"][0] for k in params["widths"]])
    ax_b.errorbar(w, rows[:, 0], yerr=rows[:, 1], fmt="o", color="C0", capsize=3,
                  label=params["method"].upper())
    ax_b.plot(w, rows[:, 3], "-", color="k", label="NTK Gaussian (theory)")
    ax_b.plot(w, rows[:, 6], "--", color="C1", label="function-space Gaussian (theory)")
    ax_b.fill_between(w, rows[:, 6] - rows[:, 7], rows[:, 6] + rows[:, 7], color="C1", alpha=0.3, lw=0)
    if sgld:
        ax_b.plot(w, rows[:, 4], ":", color="0.4", label="same, with SGLD step bias")
    ax_b.set_xscale("log")
    ax_b.set_xticks(w, [f"{k:d}" for k in params["widths"]])
    ax_b.minorticks_off()
    ax_b.set_xlabel("hidden width")
    ax_b.set_ylabel(r"$\hat\lambda$")
    ax_b.set_title(rf"(b) $\beta = 1/\log n$, n = {params['n']}, $\gamma$ = {params['gamma']}", fontsize=10)
    ax_b.legend(fontsize=8)
    ax_c.errorbar(w, rows[:, 0] - rows[:, 4], yerr=rows[:, 1], fmt="o", color="C0", capsize=3,
                  label=f"$\\gamma$ = {params['gamma']:g}")
    ax_c.plot(w, rows[:, 6] - rows[:, 3], "--", color="C0", label="function-space theory")
    ax_c.fill_between(w, rows[:, 6] - rows[:, 7] - rows[:, 3], rows[:, 6] + rows[:, 7] - rows[:, 3], color="C0",
                      alpha=0.25, lw=0)
    for i, g in enumerate(params["gammas_c"]):
        rg = np.array([results[f"width{k}_gamma{g:g}"]["rows"][0] for k in params["widths"]])
        ax_c.errorbar(w * 1.05, rg[:, 0] - rg[:, 4], yerr=rg[:, 1], fmt="s", color=f"C{i + 1}",
                      capsize=3, label=f"$\\gamma$ = {g:g}")
        ax_c.plot(w * 1.05, rg[:, 6] - rg[:, 3], "--", color=f"C{i + 1}")
    ax_c.legend(fontsize=8)
    ax_c.axhline(0, color="k", lw=0.8)
    ax_c.set_xscale("log")
    ax_c.set_xticks(w, [f"{k:d}" for k in params["widths"]])
    ax_c.minorticks_off()
    ax_c.set_xlabel("hidden width")
    ax_c.set_ylabel(r"$\hat\lambda$ $-$ NTK Gaussian" + (" (with step bias)" if sgld else ""))
    ax_c.set_title(r"(c) beyond the NTK Gaussian, $\beta = 1/\log n$", fontsize=10)
    fig.suptitle(f"LLC of trained one-hidden-layer {params['activation']} networks; {params['n_chains']} chains x {params['n_steps']} "
                 f"steps, float64, 1$\\sigma$ between chains", fontsize=10)
    return fig


FIGURE = Figure(name="llc", description="LLC of trained networks vs n*beta and width, with the NTK Gaussian line",
                quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
