"""Benchmark: depth-10 NNGP + NTK (sft.kernels.nngp_and_ntk) for N inputs, relu and tanh.

Prints one row per (activation, C_W, C_b, N): compile (first call minus second call), seconds of the
second call (wall and CPU), peak resident memory of a fresh process, and the largest error on a random
subset of entries against an independent reference:

    reference = the 2x2 recursion (K_aa, K_bb, K_ab and Theta) of each sampled pair, layer by layer, with
    every Gaussian expectation from a 2-D Gauss-Legendre rule in polar coordinates of the whitened
    variables, angles split where u = 0 or v = 0 (kinks at 0 harmless), and sigma, sigma' written out
    in numpy (no autodiff, no Hermite series). The rule's own error is checked against a 1.5x finer one.

Columns ``jit cmp s``, ``jit s``: the same call wrapped in ``jax.jit`` (compile = first minus second
call; the traced path: closed forms in XLA, the Mehler series through a host callback), and
``jit-plain``: max |jit - plain| / max |plain| over K and Theta.

Errors: ``rel`` = max |K - K_ref| / |K_ref|; ``scaled`` = max |K - K_ref| / sqrt(K_aa K_bb) (the natural
scale; ``rel`` blows up only where an entry is accidentally near 0).

Usage:  python sims/benchmarks/bench_kernels.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sft.gaussian import polar_expectation

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install
DEPTH = 10
SIGMA = {  # numpy (sigma, sigma') pairs, written independently of sft
    "relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float)),
    "tanh": (np.tanh, lambda z: 1.0 / np.cosh(np.minimum(np.abs(z), 300.0)) ** 2),
}


def reference_pair(xa, xb, act, C_W, C_b, fineness=1.0):
    """(K_ab, Theta_ab, K_aa, K_bb) at the readout by the 2x2 recursion with polar quadrature,
    n = fineness * (160 + 10 max q) nodes per direction."""
    f, df = SIGMA[act]
    d = xa.size
    qa, qb, c = (C_b + C_W * u @ v / d for u, v in ((xa, xa), (xb, xb), (xa, xb)))
    ta, tb, t = qa, qb, c
    for _ in range(DEPTH):
        n = int(fineness * (160 + 10 * max(qa, qb)))
        ess = [polar_expectation(f, f, *p, n=n) for p in ((qa, qa, qa), (qb, qb, qb), (qa, qb, c))]
        edd = [polar_expectation(df, df, *p, n=n) for p in ((qa, qa, qa), (qb, qb, qb), (qa, qb, c))]
        k_new = [C_b + C_W * e for e in ess]
        ta, tb, t = (k + C_W * e * th for k, e, th in zip(k_new, edd, (ta, tb, t)))
        qa, qb, c = k_new
    return c, t, qa, qb


def run_one(act, N, C_W, C_b, n_check, seed=0):
    """Time one configuration (fresh process); returns a dict of results."""
    import jax

    from sft.kernels import nngp_and_ntk

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 16))
    kw = dict(depth=DEPTH, activation=act, C_W=C_W, C_b=C_b)
    t0 = time.perf_counter()
    nngp_and_ntk(x, **kw)
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    K, T = nngp_and_ntk(x, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the same kernels under jax.jit (traced path: closed forms in XLA, Mehler series via host callback)
    jitted = jax.jit(lambda x: nngp_and_ntk(x, **kw))
    t0 = time.perf_counter()
    jax.block_until_ready(jitted(x))
    jit_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    Kj, Tj = jax.block_until_ready(jitted(x))
    jit_wall = time.perf_counter() - t0
    jit_vs_plain = max(float(np.max(np.abs(Kj - K))) / float(np.max(np.abs(K))),
                       float(np.max(np.abs(Tj - T))) / float(np.max(np.abs(T))))
    pairs = [(i, i) for i in rng.choice(N, 2, replace=False)] + \
        [tuple(rng.choice(N, 2, replace=False)) for _ in range(n_check)]
    err = dict(K_rel=0.0, K_scaled=0.0, T_rel=0.0, T_scaled=0.0, ref_selfcheck=0.0)
    for a, b in pairs:
        k_ref, t_ref, kaa, kbb = reference_pair(x[a], x[b], act, C_W, C_b)
        k_fine, t_fine, _, _ = reference_pair(x[a], x[b], act, C_W, C_b, fineness=1.5)
        scale_k, scale_t = np.sqrt(kaa * kbb), np.sqrt(T[a, a] * T[b, b])
        err["ref_selfcheck"] = max(err["ref_selfcheck"], abs(k_fine - k_ref) / scale_k,
                                   abs(t_fine - t_ref) / scale_t)
        err["K_rel"] = max(err["K_rel"], abs(K[a, b] - k_ref) / abs(k_ref))
        err["T_rel"] = max(err["T_rel"], abs(T[a, b] - t_ref) / abs(t_ref))
        err["K_scaled"] = max(err["K_scaled"], abs(K[a, b] - k_ref) / scale_k)
        err["T_scaled"] = max(err["T_scaled"], abs(T[a, b] - t_ref) / scale_t)
    return dict(act=act, N=N, C_W=C_W, C_b=C_b, compile=first - wall, wall=wall, cpu=cpu,
                peak_mib=peak_mib, jit_compile=jit_first - jit_wall, jit_wall=jit_wall,
                jit_vs_plain=jit_vs_plain, jax=jax.__version__, **err)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 200 only, fewer checked entries")
    p.add_argument("--one", nargs=4, metavar=("ACT", "N", "C_W", "C_b"), help=argparse.SUPPRESS)
    p.add_argument("--check", type=int, default=8, help="random off-diagonal entries checked (default 8)")
    args = p.parse_args()
    if args.one:
        act, N, cw, cb = args.one
        print(json.dumps(run_one(act, int(N), float(cw), float(cb), args.check)))
        return
    sizes = [200] if args.quick else [200, 1000, 4000]
    configs = [("relu", 2.0, 0.0), ("tanh", 1.5, 0.1), ("tanh", 3.0, 1.0)]
    head = (f"{'act':5} {'C_W':>4} {'C_b':>4} {'N':>5} {'compile s':>9} {'wall s':>7} {'cpu s':>6} "
            f"{'peak MiB':>8} {'K rel':>8} {'K scaled':>8} {'T rel':>8} {'T scaled':>8} {'ref chk':>8} "
            f"{'jit cmp s':>9} {'jit s':>6} {'jit-plain':>9}")
    print(head)
    for act, cw, cb in configs:
        for N in sizes:
            out = subprocess.run([sys.executable, __file__, "--one", act, str(N), str(cw), str(cb),
                                  "--check", str(args.check if not args.quick else 3)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{act:5} {cw:4.1f} {cb:4.1f} {N:5d} {r['compile']:9.2f} {r['wall']:7.2f} {r['cpu']:6.2f} "
                  f"{r['peak_mib']:8.0f} {r['K_rel']:8.1e} {r['K_scaled']:8.1e} {r['T_rel']:8.1e} "
                  f"{r['T_scaled']:8.1e} {r['ref_selfcheck']:8.1e} {r['jit_compile']:9.2f} {r['jit_wall']:6.2f} "
                  f"{r['jit_vs_plain']:9.1e}", flush=True)


if __name__ == "__main__":
    main()
