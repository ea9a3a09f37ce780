"""Effective samples per second of the MALA posterior sampler (sft.sim.sampling), network vs Gaussian target.

Network posterior (sft.sim.sample_network_posterior, float64): one hidden layer of width n, erf,
C_W = 2, C_b = 0.1, input dimension 1, P training points y = sin(2x) on [-1.5, 1.5], noise sigma^2,
T = 1; D = 3n + 1 parameters. Recorded: the prediction at one test input x* = 0.3. Reference:
sft.sim.mala on the standard normal in the same dimension D (the prior alone), recording x_1,
chains started from N(0, I). For each step size h: acceptance rate, split-R-hat and ESS of the recorded scalar
(sft.sim.split_rhat, effective_sample_size), ESS per 1000 steps of one chain, and ESS per
second of sampling.

Timing: mala jit-compiles a fresh closure on every call, so the wall time of a call includes compilation.
It is estimated by a call with the same shapes and one burn-in + one step and subtracted (after one
untimed warm-up call per target, which absorbs JAX's first-call costs): "sampling s"
is the time of burn-in + n_steps for all chains; ESS/s = ESS / sampling s. The compilation time
fluctuates by ~1 s on a loaded machine, so the default n_steps makes sampling take several seconds;
"ESS/1k st" (ESS per 1000 steps of one chain) does not depend on the machine.

Usage (repository root):
    PYTHONPATH=. python sims/benchmarks/bench_sampler.py [--width n] [--points P] [--chains C] [--steps K]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import sampling as sp
def timed(fn):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t


def row(name, h, run, n_steps, burn_in, chains):
    _, t_compile = timed(lambda: run(h, 1, 1))
    res, t_total = timed(lambda: run(h, n_steps, burn_in))
    draws = np.asarray(res.samples)
    ess = sp.effective_sample_size(draws)
    t = t_total - t_compile
    print(f"{name:>9} {h:>8.4f} {float(np.mean(res.acceptance_rate)):>6.2f} {sp.split_rhat(draws):>6.3f} "
          f"{ess:>8.0f} {1000 * ess / (chains * n_steps):>10.1f} {t_compile:>9.2f} {t:>10.2f} "
          f"{ess / t:>8.0f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--points", type=int, default=8)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--burn-in", type=int, default=1000)
    p.add_argument("--net-steps", type=float, nargs="+", default=[0.0005, 0.001, 0.002])
    p.add_argument("--gauss-steps", type=float, nargs="+", default=[0.3, 0.7, 1.2])
    a = p.parse_args()
    key = jax.random.key(0)
    x = np.linspace(-1.5, 1.5, a.points)[:, None]
    y, xs = np.sin(2 * x[:, 0]), np.array([[0.3]])
    D = 3 * a.width + 1
    net = dict(widths=[a.width], activation="erf", C_W=2.0, C_b=0.1, noise=a.noise, temperature=1.0,
               n_chains=a.chains)

    def run_net(h, n_steps, burn_in):
        r = sp.sample_network_posterior(key, x, y, xs, step_size=h, n_steps=n_steps, burn_in=burn_in, **net)
        return sp.MALAResult(r.samples[..., 0], r.acceptance_rate)

    init = jax.random.normal(jax.random.key(1), (a.chains, D), jnp.float64)

    def run_gauss(h, n_steps, burn_in):
        return sp.mala(lambda v: -0.5 * v @ v, init, key, step_size=h, n_steps=n_steps, burn_in=burn_in,
                       record=lambda v: v[0])

    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float64; D = {D} parameters, "
          f"{a.chains} chains x {a.steps} steps after {a.burn_in} burn-in; network: width {a.width}, "
          f"P = {a.points}, noise {a.noise}")
    print(f"{'target':>9} {'h':>8} {'acc':>6} {'R-hat':>6} {'ESS':>8} {'ESS/1k st':>10} {'compile s':>9} "
          f"{'sampling s':>10} {'ESS/s':>8}")
    jax.block_until_ready(run_net(a.net_steps[0], 1, 1))
    jax.block_until_ready(run_gauss(a.gauss_steps[0], 1, 1))
    for h in a.net_steps:
        row("network", h, run_net, a.steps, a.burn_in, a.chains)
    for h in a.gauss_steps:
        row("gaussian", h, run_gauss, a.steps, a.burn_in, a.chains)


if __name__ == "__main__":
    main()
