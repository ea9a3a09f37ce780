"""Impurity physics: T-matrix vs exact inversion, closed forms vs Bloch sums, alloy theories vs Monte Carlo."""
import jax
import numpy as np
import pytest

import sft.circuits.impurity as im

Z = 0.7 + 0.05j


def test_chain_closed_form_matches_large_ring():
    r = np.arange(8)
    assert np.max(np.abs(im.ring_green(Z, 4000)[:8] - im.chain_green(Z, r))) < 1e-12
    zo = -2.5 + 0.01j                                                   # outside the band: real decay
    assert np.max(np.abs(im.ring_green(zo, 200)[:8] - im.chain_green(zo, r))) < 1e-12


def test_ring_green_and_gaussian_field_match_dense_inverse():
    L = 9
    G, res = im.exact_green(im.ring_hamiltonian(L, t=0.8, eps0=0.3), Z)
    assert res < 1e-12
    assert np.max(np.abs(G[0] - im.ring_green(Z, L, t=0.8, eps0=0.3))) < 1e-12
    lap = 2 * np.eye(L) - np.roll(np.eye(L), 1, 1) - np.roll(np.eye(L), -1, 1)
    C = np.linalg.solve(0.49 * np.eye(L) + lap, np.eye(L))
    assert np.max(np.abs(C[0] - im.gaussian_field_covariance(L, 0.7))) < 1e-12


@pytest.mark.parametrize("z", [Z, -1.9 + 1e-3j, 3.0 + 0.2j])
def test_t_matrix_green_matches_exact_inversion(z):
    L, r, V = 40, np.array([3, 10, 11, 39]), np.array([2.0, -1.5, 4.0, 0.7])
    H = im.ring_hamiltonian(L, t=1.1, eps0=-0.2)
    H[r, r] += V
    G, res = im.exact_green(H, z)
    assert res < 1e-10
    assert np.max(np.abs(G - im.impurity_green(z, L, r, V, t=1.1, eps0=-0.2))) < 1e-10


def test_single_impurity_t_matrix_closed_form():
    g0 = im.chain_green(Z, 0)[()]
    assert abs(im.t_matrix([3.0], [[g0]])[0, 0] - 3.0 / (1 - 3.0 * g0)) < 1e-14


def test_cpa_limits_and_residual():
    z = 0.4 + 0.05j
    assert abs(im.alloy_self_energy(z, 0.0, 4.0, method="cpa")) < 1e-12
    assert abs(im.alloy_self_energy(z, 1.0, 4.0, method="cpa") - 4.0) < 1e-10
    s = im.alloy_self_energy(z, 0.3, 2.0, method="cpa")
    assert abs(im.cpa_residual(s, z, 0.3, 2.0)) < 1e-10
    assert s.imag < 0                                                   # retarded
    # SCBA solves its own equation
    s = im.alloy_self_energy(z, 0.3, 0.5, method="scba")
    assert abs(s - 0.15 - 0.21 * 0.25 * im.chain_green(z - s, 0)[()]) < 1e-10


def test_cpa_equals_ata_to_first_order_in_c():
    """CPA - ATA = O(c^2): halving c divides the difference by ~4 (Elliott, Krumhansl & Leath 1974)."""
    z, V = 0.5 + 0.1j, 4.0
    d = [abs(im.alloy_self_energy(z, c, V, method="cpa") - im.alloy_self_energy(z, c, V, method="ata"))
         for c in (0.02, 0.01)]
    assert 3.5 < d[0] / d[1] < 4.5
    # Born is wrong already at O(c): its Sigma/c differs from the exact single-impurity t
    c = 0.01
    t1 = V / (1 - V * im.chain_green(z, 0)[()])
    assert abs(im.alloy_self_energy(z, c, V, method="ata") / c - t1) < 0.05 * abs(t1)
    assert abs(im.alloy_self_energy(z, c, V, method="born") / c - t1) > 0.5 * abs(t1)


def test_dilute_strong_impurities_born_fails_ata_cpa_agree_with_monte_carlo():
    """c = 0.02, V = 4 t, eta = 0.1, ring L = 200, 300 realizations (seed 1), five in-band energies.

    Born and SCBA expand t = V/(1 - V g) in V and are off by many error bars; ATA and CPA keep the exact
    single-impurity T-matrix and agree within |z| < 4 at every energy."""
    L, c, V = 200, 0.02, 4.0
    zs = np.array([-1.5, -0.5, 0.5, 1.0, 1.5]) + 0.1j
    mean, se = im.alloy_local_green_mc(zs, c, V, L=L, n_real=300, key=jax.random.key(1))
    assert np.all(se.real > 0) and np.all(se.imag > 0)

    def zmax(method):
        g = np.array([im.alloy_local_green(z, c, V, method=method, L=L) for z in zs])
        return np.maximum(np.abs((g - mean).real / se.real), np.abs((g - mean).imag / se.imag))

    assert np.all(zmax("ata") < 4) and np.all(zmax("cpa") < 4)
    assert np.all(zmax("born") > 4) and np.max(zmax("born")) > 30
    assert np.all(zmax("scba") > 4) and np.max(zmax("scba")) > 30


@pytest.mark.parametrize("call, name", [
    (lambda: im.ring_green(0.5 + 0.0j, 10), "z="),
    (lambda: im.ring_green(0.5 - 0.1j, 10), "z="),
    (lambda: im.ring_green(Z, 0), "L="),
    (lambda: im.ring_hamiltonian(2.5), "L="),
    (lambda: im.impurity_green(Z, 10, [3, 10], [1.0, 1.0]), "sites="),
    (lambda: im.impurity_green(Z, 10, [3, 3], [1.0, 1.0]), "sites="),
    (lambda: im.impurity_green(Z, 10, [3, 4], [1.0]), "strengths"),
    (lambda: im.alloy_self_energy(Z, 1.2, 1.0, method="cpa"), "c="),
    (lambda: im.alloy_self_energy(Z, -0.1, 1.0, method="ata"), "c="),
    (lambda: im.alloy_self_energy(Z, 0.1, 1.0, method="cpa2"), "method="),
    (lambda: im.alloy_self_energy(Z, 0.1, np.inf, method="cpa"), "V="),
    (lambda: im.gaussian_field_covariance(5, 0.0), "mass="),
    (lambda: im.alloy_local_green_mc([Z], 0.1, 1.0, L=10, n_real=1, key=jax.random.key(0)), "n_real="),
])
def test_bad_input_raises(call, name):
    with pytest.raises(ValueError, match=name):
        call()
