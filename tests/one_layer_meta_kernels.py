"""Meta-kernels of a one-hidden-layer network on the quadrature of sft.predict.gd_correction, shared by
tests/test_trained_ensemble.py and tests/test_generated_gd.py (every meta-kernel is a single-neuron average
there, so this is an independent route to what sft.finite.output_meta_kernels computes by recursion)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from sft.predict import gd_correction as gdc
from sft.predict.trained_ensemble import _Toy


@functools.partial(jax.jit, static_argnums=0)
def neuron_derivatives(act, c, B, nodes):
    """h, J, Hess and the third derivative of h(p, x) = c a sigma(B xi) at every node p = (a, xi)."""
    h = lambda p: gdc._h(act, c, B, p)  # noqa: E731
    return (jax.vmap(h)(nodes), jax.vmap(jax.jacfwd(h))(nodes), jax.vmap(jax.hessian(h))(nodes),
            jax.vmap(jax.jacfwd(jax.hessian(h)))(nodes))


def one_layer_meta_kernels(x_train, y_train, x_test, activation, C_W, C_b, n_nodes):
    """Single-neuron meta-kernels on the quadrature of gd_correction (neurons p = (a, xi) drawn from the rule,
    h(p, x) = sqrt(C_W2) a sigma(z), f = sqrt(C_b2) beta + n^{-1/2} sum_i h(p_i)):
    Theta = C_b2 + <J J>, K = C_b2 + <h h>, ntk_cov = Cov(J_a.J_b, J_c.J_d), ntk_f2 = Cov(J_a.J_b, h_c h_d),
    dntk_f = <J_a . Hess J_b h_c>, ddntk_I = <d^3 h_x [J_a, J_b, J_c]>, ddntk_II = <(Hess_x J_a).(Hess_y J_b)>;
    Theta1 = G1 = dntk_f3 = 0 at O(1/n) for one hidden layer."""
    cfg = gdc._setup(x_train, y_train, x_test, activation, C_W, C_b, 0.1, 1, 1, n_nodes)
    w, cb2 = cfg["w"], cfg["cb2"]
    hv, J, Hs, T3 = neuron_derivatives(cfg["act"], math.sqrt(cfg["cw2"]), cfg["B"], cfg["nodes"])
    avg = lambda s, *a: np.asarray(jnp.einsum(s, w, *a))  # noqa: E731
    th, hh = jnp.einsum("qai,qbi->qab", J, J), jnp.einsum("qa,qb->qab", hv, hv)
    Theta, K = cb2 + avg("q,qab->ab", th), cb2 + avg("q,qab->ab", hh)
    ntk_cov = avg("q,qab,qcd->abcd", th, th) - np.einsum("ab,cd->abcd", Theta - cb2, Theta - cb2)
    ntk_f2 = avg("q,qab,qcd->abcd", th, hh) - np.einsum("ab,cd->abcd", Theta - cb2, K - cb2)
    dntk_f = avg("q,qai,qxij,qbj,qc->xabc", J, Hs, J, hv)
    dd1 = avg("q,qxijk,qai,qbj,qck->xabc", T3, J, J, J)
    dd2 = avg("q,qxij,qaj,qyik,qbk->xyab", Hs, J, Hs, J)
    N = K.shape[0]
    z = np.zeros((N, N))
    return _Toy(K, z, Theta, z, ntk_cov, ntk_f2, dntk_f, np.zeros((N,) * 6), dd1, dd2)
