"""Symbolic perturbation theory (sympy): cumulants, Wick contractions, Edgeworth expansions, Feynman
diagrams with symmetry factors, Schwinger-Dyson series.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'hermite': ['hermite_he', 'hermite_he_numeric', 'hermite_tensor', 'check_covariance'],
    'cumulants': ['check_order', 'check_coefficient', 'set_partitions', 'moments_from_cumulants', 'cumulants_from_moments', 'moment_tensors_from_cumulants', 'cumulant_tensors_from_moments', 'gamma_cumulants', 'cumulant_symbols'],
    'wick': ['double_factorial', 'perfect_matchings', 'number_of_pairings', 'gaussian_moment', 'gaussian_moment_of_linear_forms'],
    'edgeworth': ['X', 'T', 'Z', 'EPS', 'standardized_cumulants', 'edgeworth_cf_coefficients', 'edgeworth_polynomials', 'edgeworth_density', 'edgeworth_cdf', 'edgeworth_cf', 'nearly_gaussian_density', 'nearly_gaussian_cdf', 'cornish_fisher_polynomials', 'cornish_fisher_quantile', 'multivariate_edgeworth_density', 'to_numeric', 'density_minimum', 'is_nonnegative', 'edgeworth_density_numeric'],
    'feynman': ['Diagram', 'diagrams', 'symbolic_value', 'one_component_series', 'propagator', 'evaluate', 'correlator', 'wick_contraction_counts', 'contraction_multiplicity', 'draw'],
    'schwinger_dyson': ['moment_series'],
    'effective_action': ['coupling_keys', 'cumulants_from_couplings', 'couplings_from_cumulants', 'quartic_tree_six_point', 'whitened_coupling_ratio'],
    'phi4_exact': ['phi4_partition_function', 'phi4_second_moment'],
})
