"""Circuits as impurities in a renormalized Gaussian background: impurity T-matrix physics, planted
low-rank circuits, Gaussian equivalence, sparse strong synapses, and the interpretation residual as a GP.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'impurity': ['ring_hamiltonian', 'ring_green', 'chain_green', 'gaussian_field_covariance', 'exact_green', 't_matrix', 'impurity_green', 'alloy_self_energy', 'alloy_local_green', 'cpa_residual', 'alloy_local_green_mc'],
    'planted': ['semicircle_stieltjes', 'marchenko_pastur_stieltjes', 'stieltjes_transform', 't_matrix_outliers', 'wigner_outlier', 'rectangular_outlier', 'wigner_outliers_t_matrix', 'rectangular_outliers_t_matrix', 'planted_wigner', 'planted_rectangular', 'simulate_wigner_outliers', 'simulate_rectangular_outliers', 'simulate_wigner_outliers_jax', 'simulate_rectangular_outliers_jax'],
    'gaussian_equivalence': ['equivalence_constants', 'hermite_coefficients_1d', 'background_conditional_moments', 'background_moments_hermite', 'background_moments_multi', 'background_moments_hermite_multi', 'simulate_background'],
    'sparse_synapses': ['SynapseLaw', 'lognormal_synapses', 'SparseLayer', 'strength_moments', 'input_moments', 'preactivation_cumulants', 'next_layer_cumulants', 'predicted_densities', 'expectation', 'next_kernel', 'sample_strengths', 'simulate_conditionals', 'simulate_limit', 'mc_cumulants', 'mc_excess_kurtosis', 'mc_expectation', 'mc_next_kernel'],
    'residual_gp': ['ResidualGP', 'InterpretationDiagnostics', 'random_features', 'feature_log_marginal_likelihood', 'default_feature_count', 'fit_residual_gp', 'heldout_diagnostics', 'diagnose_interpretation', 'background_variance', 'standardized_moments', 'neuron_contributions'],
    'survival': ['CircuitSurvival', 'LinearCircuitProblem', 'tlbp_noise_variance', 'threshold_temperature', 'isotropic_survival', 'column_background_stieltjes', 'column_background_edge', 'anisotropic_survival', 'anisotropic_threshold_temperature', 'planted_linear_layer', 'tlbp_gaussian_draws', 'survival_statistics'],
})
