"""Gaussian numerics: expectations of activations under 1- and 2-d Gaussians (Mehler/Hermite series,
quadrature), and independent references used by the tests.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'expectations': ['gaussian_expectation', 'diag_expectations', 'pair_expectations', 'HermiteCoefficients', 'hermite_coefficients', 'mehler_expectations', 'pair_and_diag_expectations', 'TOL', 'N_MAX'],
    'references': ['polar_expectation'],
})
