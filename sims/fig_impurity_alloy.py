"""Figure impurity_alloy: the disorder-averaged propagator of a dilute random alloy on a tight-binding
ring, Monte Carlo over disorder against Born, self-consistent Born, average T-matrix (ATA) and CPA.

Model (sft.circuits.impurity): ring of L sites, hopping t = 1, H = -sum_i (|i><i+1| + h.c.) + sum_i V_i |i><i|,
V_i = V with probability c (else 0), V = 4 (strong: the single impurity binds a state at
E_b = sqrt(V^2 + 4) = 4.47, outside the band [-2, 2]). z = E + i eta, eta = 0.1 (retarded).
Quantity: the averaged local Green's function G_loc(z) = <G_ii(z)>, shown as the local density of
states rho(E) = -Im G_loc / pi (panels a, b) and as the distance |G_method - G_MC| at one energy (c).

Theory (lines): G_loc = g(z - Sigma) with the ring's clean local g and Sigma from
:func:`sft.circuits.alloy_self_energy`: Born Sigma = c V; SCBA Sigma = c V + c(1 - c) V^2 g(z - Sigma);
ATA Sigma = <t> / (1 + <t> g), <t> = c V / (1 - V g) (exact single-impurity T-matrix, to O(c));
CPA (Soven 1967) <t_i> = 0 self-consistently. CPA - ATA = O(c^2) (Elliott, Krumhansl & Leath 1974).
Simulation (points): :func:`sft.circuits.alloy_local_green_mc` (JAX, float64; exact G_ii from one
eigendecomposition per realization, site-averaged), mean +- standard error over realizations (1 sigma).
Run ``python sims/fig_impurity_alloy.py [--quick]`` or ``sft figures --only impurity_alloy``.
"""
from __future__ import annotations

import jax
import matplotlib.figure
import numpy as np

from sft.workflow import Figure, run_script
from sft.circuits import alloy_local_green, alloy_local_green_mc

METHODS = ("born", "scba", "ata", "cpa")
LABELS = dict(born="first Born", scba="self-consistent Born", ata="average T-matrix (ATA)", cpa="CPA")
STYLES = dict(born=("C3", ":"), scba=("C1", "-."), ata=("C2", "--"), cpa=("C0", "-"))
MARKERS = dict(born="v", scba="D", ata="^", cpa="o")
MODEL = dict(V=4.0, eta=0.1, L=100, c_dos=[0.05, 0.3], c_scan=[0.01, 0.02, 0.04, 0.08, 0.16, 0.32], E_scan=1.0)
QUICK = dict(n_real=60, n_energies=36, seed=0, dtype="float64", **MODEL)
FULL = dict(n_real=300, n_energies=60, seed=0, dtype="float64", **MODEL)
E_RANGE = (-2.8, 5.2)


def pieces(params):
    """One piece per DOS concentration and one for the concentration scan."""
    common = dict(V=params["V"], eta=params["eta"], L=params["L"], n_real=params["n_real"], dtype=params["dtype"])
    out = {f"dos_c{c:g}": dict(c_values=[c], energies=list(np.linspace(*E_RANGE, params["n_energies"])),
                               seed=params["seed"] + j, **common) for j, c in enumerate(params["c_dos"])}
    out["scan"] = dict(c_values=params["c_scan"], energies=[params["E_scan"]], seed=params["seed"] + 100, **common)
    return out


def compute(*, c_values, energies, V, eta, L, n_real, seed, dtype):
    """MC mean and stderr of G_loc (len(c), len(E)) and the four theories on the same energies and a fine grid."""
    zs = np.asarray(energies) + 1j * eta
    keys = jax.random.split(jax.random.key(seed), len(c_values))
    mc = [alloy_local_green_mc(zs, c, V, L=L, n_real=n_real, key=k) for c, k in zip(c_values, keys)]
    fine = np.linspace(*E_RANGE, 401) + 1j * eta if len(energies) > 1 else zs
    out = dict(E=np.asarray(energies), c=np.asarray(c_values), E_fine=fine.real,
               mc=np.array([m for m, _ in mc]), mc_se=np.array([s for _, s in mc]))
    for method in METHODS:
        out[method] = np.array([[alloy_local_green(z, c, V, method=method, L=L) for z in zs] for c in c_values])
        out[method + "_fine"] = np.array([[alloy_local_green(z, c, V, method=method, L=L) for z in fine]
                                          for c in c_values])
    return out


def plot(results, params):
    """(a, b) local DOS vs E at a dilute and a concentrated alloy; (c) distance to MC vs c at one energy."""
    fig = matplotlib.figure.Figure(figsize=(14, 4.8), layout="constrained")
    ax = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1.25, 1.25, 1]))
    V = params["V"]
    Eb = np.sqrt(V ** 2 + 4)
    for a, c in zip(ax[:2], params["c_dos"]):
        r = results[f"dos_c{c:g}"]
        for m in METHODS:
            col, ls = STYLES[m]
            a.plot(r["E_fine"], -r[m + "_fine"][0].imag / np.pi, ls, color=col, lw=1.5, label=LABELS[m])
        a.errorbar(r["E"], -r["mc"][0].imag / np.pi, r["mc_se"][0].imag / np.pi, fmt="o", color="k", ms=3.5,
                   capsize=2, lw=0.8, label=f"Monte Carlo ({params['n_real']} alloys)", zorder=5)
        a.axvline(Eb, color="0.6", lw=0.8, ls=":")
        a.text(Eb, a.get_ylim()[1] * 0.97, r" $E_b = \sqrt{V^2 + 4}$" "\n (single-impurity\n bound state)",
               fontsize=7.5, va="top", ha="center", color="0.3")
        for edge in (-2, 2):
            a.axvline(edge, color="0.85", lw=0.8)
        a.set(xlabel=r"energy $E$ (units of the hopping $t$)", ylabel=r"local DOS $-{\rm Im}\, G_{\rm loc}(E + i\eta)/\pi$",
              title=f"c = {c:g}: " + ("dilute strong impurities" if c < 0.1 else "concentrated alloy"))
        a.grid(alpha=0.3)
    handles, labels = ax[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8.5)
    r = results["scan"]
    cs = r["c"]
    floor = np.abs(r["mc_se"][:, 0])
    for m, shift in zip(METHODS, (0.94, 0.98, 1.02, 1.06)):   # small horizontal offsets: ATA and CPA overlap
        col, ls = STYLES[m]
        d = np.abs(r[m][:, 0] - r["mc"][:, 0])
        above = d > 2 * floor
        x = cs * shift
        ax[2].plot(x[above], d[above], MARKERS[m], color=col, ms=5, label=f"|{LABELS[m]} $-$ MC|")
        ax[2].plot(x[~above], d[~above], MARKERS[m], color=col, mfc="white", ms=5)
        ax[2].plot(x, d, ls, color=col, lw=0.8, alpha=0.6)
    ax[2].plot(cs, 2 * floor, "-", color="0.5", lw=2, alpha=0.5, label=r"2 $\times$ MC standard error (hollow: below)")
    diff = np.abs(r["cpa"][:, 0] - r["ata"][:, 0])
    ax[2].plot(cs, diff, "s", color="C4", ms=4, label=r"|CPA $-$ ATA| (theory only)")
    ax[2].plot(cs, diff[0] * (cs / cs[0]) ** 2, "-", color="C4", lw=0.8, label=r"$\propto c^2$")
    ax[2].set(xscale="log", yscale="log", xlabel="impurity concentration $c$",
              ylabel=r"$|G_{\rm loc} - G_{\rm loc}^{\rm MC}|$ at " + rf"$E = {params['E_scan']:g} + {params['eta']:g}i$",
              title="distance to Monte Carlo vs concentration")
    ax[2].grid(alpha=0.3, which="both")
    ax[2].legend(fontsize=7)
    fig.suptitle(
        rf"Binary alloy on a ring of L = {params['L']} sites: $V_i = V$ = {V:g} with probability $c$, hopping $t = 1$, "
        rf"$\eta$ = {params['eta']:g}. Born theories expand $t = V/(1 - Vg)$ in $V$ and miss the impurity band; "
        "ATA/CPA keep the exact single-impurity T-matrix\n"
        "lines: single-site theories (self-energy on the ring's local propagator); points: exact Green's function "
        "averaged over alloys (JAX, float64), mean $\\pm$ 1 standard error", fontsize=9.5)
    return fig


FIGURE = Figure(
    name="impurity_alloy",
    description="disorder-averaged alloy propagator: Monte Carlo vs Born, SCBA, ATA, CPA (DOS and error vs concentration)",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
