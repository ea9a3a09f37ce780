"""Figure sparse_synapses: sparse strong synapses on a dense Gaussian background (sft.circuits.sparse_synapses).

Layer: inputs x = erf(g), g ~ N(0, K_in); output preactivation z = sum_j W_j x_j with W_j = sqrt(C_W/n) G_j
(C_W = 1) plus a Poisson(lam) number of strong synapses of strengths J = +-|J|, |J| log-normal
(J0 = 1, s = 0.5), at uniform positions. float64 throughout.

(a) Excess kurtosis of z (one input, K_in = 1, lam = 3) against the width n: sparse + dense (points:
    finite-width Monte Carlo, Rao-Blackwellized over the Gaussian part, jackknife 1 sigma; line: the exact
    finite-n cumulants, eq. (1) of the module; dashed: the n -> inf value lam E[J^4] E[x^4] / kappa_2^2)
    against the dense background alone (lam = 0; line 3 Var(x^2) / (n E[x^2]^2), the 1/n vertex).
(b) Next-layer kernel E[erf(z_a) erf(z_b)] (two inputs, K_in = [[1, 0.6], [0.6, 1.5]], lam = 4): largest
    error over the three entries against the mean number k of strongest synapses kept discrete (|J| above
    the threshold with lam P(|J| > J_c) = k), for keep-k (i) and keep-k + Edgeworth of orders 2, 4 (ii)
    (order 1 equals order 0 here: kappa_3 = 0 for random signs).
    Lines: error against the exact infinite-width law (Fourier inversion of its characteristic function);
    points: error against a finite-width simulation at n = 1000 (error bars: its 1 sigma), whose
    standard error is the dashed floor.
(c) Low-density expansion to order M (iii), the same kernel: error against the exact law, and the bound
    P(m > M) sup|erf|^2 = P(Poisson(lam) > M).
Run ``python sims/fig_sparse_synapses.py [--quick]`` or ``sft figures --only sparse_synapses``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np
import scipy.stats

from sft.circuits import sparse_synapses as ss
from sft.workflow import Figure, run_script

COMMON = dict(J0=1.0, s=0.5, activation="erf", C_W=1.0, dtype="float64")
QUICK = dict(widths=[4, 16, 64, 256], n_kurt=10_000, lam_kurt=3.0, lam=4.0, K_in=[[1.0, 0.6], [0.6, 1.5]],
             ks=[0.0, 0.5, 1.0, 2.0, 3.0, 4.0], orders=[0, 2, 4], Ms=list(range(0, 13)), n_mc=1000, n_kernel=10_000,
             seed=0, **COMMON)
FULL = dict(widths=[2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], n_kurt=100_000, lam_kurt=3.0, lam=4.0,
            K_in=[[1.0, 0.6], [0.6, 1.5]], ks=[0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0], orders=[0, 2, 4],
            Ms=list(range(0, 17)), n_mc=1000, n_kernel=200_000, seed=0, **COMMON)


def layer(lam, K_in, J0, s, activation, C_W):
    return ss.SparseLayer(float(lam), ss.lognormal_synapses(J0, s), activation, K_in, C_W=C_W)


def pieces(params):
    law = {k: params[k] for k in ("J0", "s", "activation", "C_W", "dtype")}
    out = {f"kurtosis_n{n}": dict(kind="kurtosis", n=n, lam=params["lam_kurt"], n_samples=params["n_kurt"],
                                  seed=params["seed"] + i, **law) for i, n in enumerate(params["widths"])}
    out["theory"] = dict(kind="theory", lam=params["lam"], K_in=params["K_in"], ks=params["ks"],
                         orders=params["orders"], Ms=params["Ms"], **law)
    out["mc_kernel"] = dict(kind="mc_kernel", lam=params["lam"], K_in=params["K_in"], n=params["n_mc"],
                            n_samples=params["n_kernel"], seed=params["seed"] + 100, **law)
    return out


def compute(*, kind, lam, J0, s, activation, C_W, dtype, **kw):
    assert dtype == "float64"
    if kind == "kurtosis":
        out = {}
        for name, lm in (("sparse", lam), ("dense", 0.0)):
            L = layer(lm, 1.0, J0, s, activation, C_W)
            D, G = ss.simulate_conditionals(L, kw["n"], jax.random.key(kw["seed"]), kw["n_samples"],
                                            batch=max(1, min(kw["n_samples"], 4_000_000 // kw["n"])))
            out[name], out[name + "_err"] = ss.mc_excess_kurtosis(D, G)
        return out
    L = layer(lam, kw["K_in"], J0, s, activation, C_W)
    if kind == "theory":
        methods = [("exact",)] + [("keep", k, o) for o in kw["orders"] for k in kw["ks"]] + \
            [("low_density", M) for M in kw["Ms"]]
        axes, p = ss.predicted_densities(L, methods)
        return dict(K=np.array([ss.next_kernel(L, axes, q) for q in p]))
    D, G = ss.simulate_conditionals(L, kw["n"], jax.random.key(kw["seed"]), kw["n_samples"], batch=2000)
    K, err = ss.mc_next_kernel(L, D, G)
    return dict(K=K, err=err)


def plot(results, params):
    fig = matplotlib.figure.Figure(figsize=(15, 4.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    # (a) kurtosis vs width
    n = np.array(params["widths"], dtype=float)
    nn = np.unique(np.rint(np.geomspace(n[0], n[-1] * 1.3, 200)))
    Ls = layer(params["lam_kurt"], 1.0, *(params[k] for k in ("J0", "s", "activation", "C_W")))
    Ld = layer(0.0, 1.0, *(params[k] for k in ("J0", "s", "activation", "C_W")))
    kurt = lambda L, w: (lambda k: k[3] / k[1] ** 2)(ss.preactivation_cumulants(L, 4, n=int(w)))
    ax1.plot(nn, [kurt(Ls, w) for w in nn], "-", color="C3", label=f"sparse + dense, exact finite n ($\\lambda$ = {params['lam_kurt']:g})")
    kinf = ss.preactivation_cumulants(Ls, 4)
    ax1.axhline(kinf[3] / kinf[1] ** 2, color="C3", ls="--", lw=1, label=r"$n\to\infty$: $\lambda E[J^4]E[x^4]/\kappa_2^2$")
    ax1.plot(nn, [kurt(Ld, w) for w in nn], "-", color="C0", label=r"dense only: $3\,\mathrm{Var}(x^2)/(n\,E[x^2]^2)$")
    for name, c, lab in (("sparse", "C3", "simulation, sparse + dense"), ("dense", "C0", "simulation, dense only")):
        y = np.array([results[f"kurtosis_n{w}"][name] for w in params["widths"]])
        e = np.array([results[f"kurtosis_n{w}"][name + "_err"] for w in params["widths"]])
        ax1.errorbar(n, y, yerr=e, fmt="o", color=c, capsize=3, ms=5, label=lab)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("width $n$ (inputs per neuron)")
    ax1.set_ylabel(r"excess kurtosis $\kappa_4/\kappa_2^2$ of $z$")
    ax1.set_title("(a) non-Gaussianity does not vanish with width", fontsize=10)
    ax1.legend(fontsize=7.5)
    ax1.grid(True, which="both", alpha=0.3)
    # (b) error vs k kept
    K = results["theory"]["K"]
    exact = K[0]
    ks, orders, Ms = params["ks"], params["orders"], params["Ms"]
    mc, mce = results["mc_kernel"]["K"], results["mc_kernel"]["err"]
    floor = mce.max()
    iu = np.triu_indices(2)
    for io, o in enumerate(orders):   # (order 1 adds only kappa_3 = 0 for random signs: not shown)
        Kk = K[1 + io * len(ks): 1 + (io + 1) * len(ks)]
        err_ex = np.array([np.abs(q - exact)[iu].max() for q in Kk])
        lab = "keep-k (i)" if o == 0 else f"keep-k + Edgeworth order {o} (ii)"
        ok = err_ex > 1e-13
        ax2.plot(np.array(ks)[ok], err_ex[ok], "-", color=f"C{io}", label=lab + ", vs exact law")
        j = [np.argmax(np.abs(q - mc)[iu]) for q in Kk]
        err_mc = np.array([np.abs(q - mc)[iu][jj] for q, jj in zip(Kk, j)])
        ax2.errorbar(np.array(ks) + 0.03 * (io - 1), err_mc, yerr=[mce[iu][jj] for jj in j], fmt="o", ms=4,
                     color=f"C{io}", capsize=2, label=lab + f", vs simulation (n = {params['n_mc']})")
    ax2.axhline(floor, color="0.4", ls="--", label=f"simulation 1$\\sigma$ ({params['n_kernel']} networks)")
    ax2.set_yscale("log")
    ax2.set_xlabel(r"mean number $k$ of strongest synapses kept discrete ($\lambda P(|J|>J_c)=k$)")
    ax2.set_ylabel(r"max error of $E[\mathrm{erf}(z_a)\mathrm{erf}(z_b)]$")
    ax2.set_title(f"(b) next-layer kernel, keep-k predictors ($\\lambda$ = {params['lam']:g})", fontsize=10)
    ax2.legend(fontsize=7, loc="lower left")
    ax2.grid(True, which="both", alpha=0.3)
    # (c) low-density expansion
    KM = K[1 + len(orders) * len(ks):]
    err_M = np.array([np.abs(q - exact)[iu].max() for q in KM])
    ax3.semilogy(Ms, err_M, "o-", color="C4", label="low-density expansion to order $M$ (iii), vs exact law")
    ax3.semilogy(Ms, scipy.stats.poisson.sf(Ms, params["lam"]), "--", color="0.3",
                 label=r"bound $P(m > M)\,\sup\mathrm{erf}^2$")
    ax3.axhline(floor, color="0.6", ls=":", label="simulation 1$\\sigma$ (as in (b))")
    ax3.set_xlabel("order $M$ (impurities per neuron)")
    ax3.set_ylabel("max error of the kernel")
    ax3.set_title(r"(c) $E F = e^{-\lambda}\sum_{m\leq M}\lambda^m/m!\;E[F\,|\,m]$", fontsize=10)
    ax3.legend(fontsize=7.5)
    ax3.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Sparse strong synapses (log-normal |J|, s = {params['s']}, random sign) on a dense Gaussian "
                 f"background ($C_W$ = {params['C_W']}), erf; float64, {params['n_kurt']} networks per width in (a)",
                 fontsize=10)
    return fig


FIGURE = Figure(name="sparse_synapses",
                description="sparse strong synapses: width-independent non-Gaussianity; keep-k, Edgeworth and "
                            "low-density predictors of the next-layer kernel",
                quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
