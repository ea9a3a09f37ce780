"""ntk_change_by_layer_flow: the per-layer O(1/n) NTK change under gradient flow (issue 13, item 3), against
the GD version (ntk_change_by_layer_gd) at small steps and the sum rule over layers. Toy meta-kernels with
the symmetries of the real ones split at random into layers (the dynamics is linear in them, so a toy split
tests every term; the real restricted meta-kernels are tested in tests/test_ntk_change.py)."""
import numpy as np

from sft.predict.trained_ensemble import (_toy_layer_meta_kernels, _toy_meta_kernels, ntk_change_by_layer_flow,
                                          ntk_change_by_layer_gd)

Y = np.array([0.5, -0.3])


def test_flow_is_the_small_step_limit_of_gd_and_sums_over_layers():
    """Richardson 2 D(eta/2, 2k) - D(eta, k) leaves O(eta^2): |flow - Richardson| <= 0.05 |D(eta/2) - D(eta)|
    (the O(eta) difference) at t = k eta = 1, eta = 0.025 (the ratio halves with eta, as O(eta^2) requires); the layers' sum depends only on the summed meta-kernels (two
    random splits into 3 layers agree to 1e-12); Delta = 0 at t = 0."""
    mk = _toy_meta_kernels(3, seed=4)
    lm = _toy_layer_meta_kernels(mk, 3, seed=5)
    t, flow, parts = ntk_change_by_layer_flow(mk, lm, Y, n_train=2, times=[0.0, 1.0])
    assert np.abs(flow[:, 0]).max() == 0.0 and np.abs(parts["ddntk"][:, 1]).max() > 1e-3
    eta, k = 0.025, 40  # residual / difference = 0.051 at eta = 0.05, 0.025 here (measured): O(eta)
    d1 = ntk_change_by_layer_gd(mk, lm, Y, n_train=2, learning_rate=eta, n_steps=k, record_every=k)[1][:, -1]
    d2 = ntk_change_by_layer_gd(mk, lm, Y, n_train=2, learning_rate=eta / 2, n_steps=2 * k,
                                record_every=2 * k)[1][:, -1]
    rich = 2 * d2 - d1
    assert np.abs(flow[:, 1] - rich).max() <= 0.05 * np.abs(d2 - d1).max(), (np.abs(flow[:, 1] - rich).max(),
                                                                              np.abs(d2 - d1).max())
    other = ntk_change_by_layer_flow(mk, _toy_layer_meta_kernels(mk, 3, seed=6), Y, n_train=2, times=[0.0, 1.0])
    np.testing.assert_allclose(other[1].sum(0), flow.sum(0), rtol=0, atol=1e-12 * np.abs(flow.sum(0)).max())
