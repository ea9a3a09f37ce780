"""Figure ntk_variance_depth: the relative variance of the readout NTK grows like nu_Theta L/n, theory
against finite-width ensembles of several widths that collapse when plotted against depth / width.

    y = Var(Theta_hat) / Theta^2,   x = L / n,

with Theta_hat = sum_p (df/dp)^2 the empirical NTK of the scalar output f of ONE input (|x|^2/n_0 = 1,
K^(1) = C_W) for networks of L hidden layers of width n at criticality: ReLU (C_W = 2), tanh (C_W = 1)
and linear (C_W = 1), all C_b = 0, learning rates lambda_W = C_W, lambda_b = C_b (:mod:`sft.conventions`).

Theory (solid lines): :func:`sft.finite.ntk_relative_variance`, first order in 1/n,
(A + 2B)^(L+1) / (n Theta^(L+1)^2) (PDLT ch. 8), drawn per width at L = 1, 2, ... Dashed: the asymptote
y = nu_Theta L / n, nu_Theta = n Var / (L Theta^2) of that recursion at L = 2000 (500 in quick mode)
(:func:`sft.finite.nu_theta_from_recursion`): 4/3 - 2/(3 L + 3) for linear, so 1.333 (exact
limit 4/3); 3.666 for ReLU; 0.668 for tanh (approached slowly). Dotted (linear only): the exact law at
width n, :func:`sft.finite.deep_linear_ntk_relative_variance`, which bends above the
first-order line once L/n is no longer small.

Simulation (points). An ensemble of networks of depth L_max = x_max n gives every depth L <= L_max:
neuron 0 of layer L + 1 of such a network, z = b_0 + W_0 . sigma(z^(L)), has exactly the law of the
output of a depth-L network (layer L + 1 reads layer L as the readout does), so its NTK over the
parameters of layers 1 .. L + 1,

    Theta_hat_L = sum_{m=1}^{L+1} G^(m) |d z^(L+1)_0 / d z^(m)|^2,

has the law of the depth-L readout NTK (PDLT eq. (8.12)-(8.13); the layer sum of
:func:`sft.sim.empirical_ntk` with ``method="backprop"``, here back-propagated from neuron 0 of
every layer at once). Parameters from :func:`sft.sim.init_params`; ``compute`` checks that its
L = L_max value equals ``empirical_ntk(method="backprop")`` on the same networks. The estimate is
y_hat = k2(Theta_hat) / mean(Theta_hat)^2 over the ensemble (:func:`sft.sim.relative_variance`,
delete-a-block jackknife, 20 blocks, 1 sigma); it estimates Var / E[Theta_hat]^2, equal to the plotted
Var / Theta^2 up to O(1/n^2). Points of one width are correlated (same networks). dtype float64.
Run ``python sims/fig_ntk_variance_depth.py [--quick]`` or ``sft figures --only ntk_variance_depth``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np

from sft.kernels import get_activation
from sft.sim import relative_variance
from sft.workflow import Figure, run_script
from sft.sim import empirical_ntk, init_params
from sft.finite import (deep_linear_ntk_relative_variance, ntk_relative_variance,
                                  nu_theta_from_recursion)

#: label -> (activation, C_W, C_b, title)
SETTINGS = {
    "relu": ("relu", 2.0, 0.0, "ReLU, $C_W$ = 2"),
    "tanh": ("tanh", 1.0, 0.0, "tanh, $C_W$ = 1"),
    "linear": ("linear", 1.0, 0.0, "linear, $C_W$ = 1"),
}
#: nu_depth: depth at which nu_Theta is read off the recursion (its value moves by ~1/nu_depth)
QUICK = dict(widths=[16, 32, 64], x_max=0.25, n_ensemble=2000, d=4, seed=0, dtype="float64", nu_depth=500)
FULL = dict(widths=[16, 32, 64], x_max=0.25, n_ensemble=20000, d=4, seed=0, dtype="float64", nu_depth=2000)
_CHUNK_FLOATS = 2 ** 23  # parameters held per chunk of networks (64 MiB in float64)


def pieces(params):
    """One piece per (activation, width), each with its own seed, depth = x_max * width; and one per
    activation for the asymptotic slope nu_Theta (no width)."""
    out = {}
    for i, (label, (activation, C_W, C_b, _)) in enumerate(SETTINGS.items()):
        for j, width in enumerate(params["widths"]):
            out[f"{label}_n{width}"] = dict(
                activation=activation, C_W=C_W, C_b=C_b, width=width,
                depth=max(1, round(params["x_max"] * width)), n_ensemble=params["n_ensemble"],
                d=params["d"], seed=params["seed"] + 100 * i + j, dtype=params["dtype"])
        out[f"{label}_asymptote"] = dict(activation=activation, C_W=C_W, C_b=C_b, depth=params["nu_depth"])
    return out


@functools.partial(jax.jit, static_argnames=("activation", "C_W", "C_b"))
def _ntk_every_depth(params, x, *, activation, C_W, C_b):
    """Theta_hat_L, L = 1 .. depth, of a chunk of networks (module docstring): shape (S, depth).

    params: :func:`sft.sim.init_params` of networks with depth hidden layers (ensemble axis first);
    x: (n_0,) one input. Column L - 1 is the NTK of neuron 0 of layer L + 1 (the readout for L = depth).
    """
    act = get_activation(activation)

    def one(params):
        h, zs, gs = x, [], []
        for omega, beta in params:  # forward: G^(m) = C_b + C_W |sigma(z^(m-1))|^2 / n_{m-1}
            gs.append(C_b + C_W * (h @ h) / h.shape[0])
            zs.append(math.sqrt(C_b) * beta + math.sqrt(C_W / h.shape[0]) * (h @ omega))
            h = act.fn(zs[-1])
        depth = len(params) - 1
        # entering step m, delta (n_{m+1}, depth - m) holds d z^(L+1)_0 / d z^(m+1) for L = m+1 .. depth;
        # the target L = m (neuron 0 of layer m + 1) joins as column 0; theta[L - 1] += G^(m+1) |column|^2
        theta = jnp.zeros(depth, dtype=x.dtype)
        delta = jnp.zeros((1, 0), dtype=x.dtype)
        for m in range(depth, 0, -1):       # layer m + 1 -> m; neuron 0 of layer m + 1 starts a target
            omega = params[m][0]           # (n_m, n_{m+1})
            start = jnp.zeros((omega.shape[1], 1), dtype=x.dtype).at[0, 0].set(1.0)
            up = jnp.concatenate([start, delta], axis=1)                 # (n_{m+1}, depth - m + 1)
            theta = theta.at[m - 1:].add(gs[m] * jnp.sum(up * up, 0))
            delta = act.derivative(zs[m - 1])[:, None] * (math.sqrt(C_W / omega.shape[0]) * (omega @ up))
        return theta + gs[0] * jnp.sum(delta * delta, 0)
    return jax.vmap(one)(params)


def _chunk_size(S, floats_per_network):
    """The largest divisor of S with at most _CHUNK_FLOATS parameters per chunk (one compilation)."""
    limit = max(1, _CHUNK_FLOATS // floats_per_network)
    return max(c for c in range(1, min(S, limit) + 1) if S % c == 0)


def compute(*, activation, C_W, C_b, depth, width=None, n_ensemble=None, d=None, seed=None, dtype=None):
    """For L = 1 .. depth: first-order theory, exact law (NaN unless linear), ensemble estimate, error.

    Without ``width``: only the slope nu_Theta = n Var / (L Theta^2) at L = depth (equal widths).
    """
    if width is None:
        return dict(nu=np.float64(nu_theta_from_recursion(activation, C_W=C_W, C_b=C_b, K1=C_W,
                                                          depth=depth)))
    x = np.zeros(d)
    x[0] = np.sqrt(d)  # |x|^2 / d = 1, K^(1) = C_W
    key = jax.random.key(seed)
    chunk = _chunk_size(n_ensemble, depth * width * width + d * width)
    thetas = []
    for c in range(n_ensemble // chunk):
        params = init_params(jax.random.fold_in(key, c), n_ensemble=chunk, in_dim=d,
                             widths=[width] * depth, dtype=dtype)
        thetas.append(np.asarray(_ntk_every_depth(params, jnp.asarray(x, dtype=dtype),
                                                  activation=activation, C_W=C_W, C_b=C_b)))
        if c == 0:  # the readout column is the package's backprop NTK of the same networks
            ref = empirical_ntk(jax.random.fold_in(key, 0), x[None, :], n_ensemble=min(chunk, 8),
                                widths=[width] * depth, activation=activation, C_W=C_W, C_b=C_b,
                                dtype=dtype, method="backprop")
            if not np.allclose(thetas[0][:len(ref), -1], np.asarray(ref)[:, 0, 0], rtol=1e-10, atol=0):
                raise RuntimeError("layer-sum NTK disagrees with sft.sim.empirical_ntk")
    sim, err = relative_variance(np.concatenate(thetas))
    L = np.arange(1, depth + 1)
    theory = np.array([ntk_relative_variance(C_W, widths=[width] * l, activation=activation, C_W=C_W,
                                             C_b=C_b) for l in L])
    exact = np.array([deep_linear_ntk_relative_variance([width] * l) if activation == "linear"
                      else np.nan for l in L])
    return dict(L=L, theory=theory, exact=exact, sim=sim, sim_err=err)


def plot(results, params):
    """Three panels (ReLU, tanh, linear): y against L/n. Lines theory, points ensembles (colour = width)."""
    fig = matplotlib.figure.Figure(figsize=(12, 4.3), layout="constrained")
    axes = fig.subplots(1, 3)
    widths = params["widths"]
    style = {w: (f"C{k}", m) for k, (w, m) in enumerate(zip(widths, "osD^v"))}
    x_max = params["x_max"]
    for ax, (label, (activation, _, _, title)) in zip(axes, SETTINGS.items()):
        nu = float(results[f"{label}_asymptote"]["nu"])
        xs = np.linspace(0, x_max * 1.04, 50)
        for width in widths:
            r = results[f"{label}_n{width}"]
            color, marker = style[width]
            x = r["L"] / width
            # L = 0 (no hidden layer): Theta_hat = G^(1) is deterministic, y = 0
            ax.plot(np.r_[0, x], np.r_[0, r["theory"]], "-", color=color, lw=1.2, alpha=0.8, zorder=1)
            if activation == "linear":
                ax.plot(np.r_[0, x], np.r_[0, r["exact"]], ":", color=color, lw=1.4, zorder=1)
            ax.errorbar(x, r["sim"], yerr=r["sim_err"], fmt=marker, ms=4, color=color, mfc="white",
                        mew=1.1, capsize=2, lw=0.9, zorder=3)
        ax.plot(xs, nu * xs, "--", color="k", lw=1.1, zorder=2)
        ax.set_title(title + r",  $C_b$ = 0", fontsize=10)
        ax.set_xlim(0, x_max * 1.04)
        ax.set_ylim(0, None)
        ax.set_xlabel(r"depth / width  $L/n$")
        ax.grid(True, alpha=0.3)
        note = r"  (exact limit 4/3)" if activation == "linear" else ""
        ax.text(0.04, 0.96, rf"slope $\nu_\Theta$ = {nu:.3g}" + note, transform=ax.transAxes, va="top",
                fontsize=9)
    axes[0].set_ylabel(r"$\mathrm{Var}(\hat\Theta)\,/\,\Theta^2$  of the output's NTK")
    handles = [axes[0].plot([], [], "-", color="0.4", lw=1.2)[0],
               axes[0].plot([], [], ":", color="0.4", lw=1.4)[0],
               axes[0].plot([], [], "--", color="k", lw=1.1)[0]]
    names = [r"theory, first order in $1/n$", r"exact at width $n$ (linear only)",
             r"asymptote $\nu_\Theta L/n$"]
    for width in widths:
        color, marker = style[width]
        handles.append(axes[0].errorbar([], [], yerr=[], fmt=marker, ms=4, color=color, mfc="white",
                                        capsize=2, lw=0.9))
        names.append(f"$n$ = {width}: {params['n_ensemble']} networks")
    fig.legend(handles, names, fontsize=8.5, loc="outside lower center", ncol=4)
    fig.suptitle("Relative variance of the neural tangent kernel at criticality against depth/width: "
                 r"ensembles of all widths nearly collapse in $L/n$;"
                 "\n" r"first-order theory holds while $\nu_\Theta L/n \ll 1$ "
                 "(lines: theory; points: ensembles, one input, float64, empirical NTK by backprop, "
                 r"jackknife 1$\sigma$)", fontsize=10)
    return fig


FIGURE = Figure(
    name="ntk_variance_depth",
    description="relative variance Var(NTK)/Theta^2 of the output vs L/n, relu/tanh/linear: theory vs ensembles",
    quick=QUICK, full=FULL, pieces=pieces, compute=compute, plot=plot)

if __name__ == "__main__":
    raise SystemExit(run_script(FIGURE))
