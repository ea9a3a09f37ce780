"""Simulation of finite networks in JAX: ensembles, training, posterior samplers, estimators with error bars.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'networks': ['init_params', 'apply', 'ensemble_outputs', 'layer_kernels', 'empirical_nngp', 'empirical_ntk', 'EmpiricalNNGP', 'MEMORY_BUDGET_BYTES', 'MAX_NETWORKS', 'MAX_BYTES', 'MAX_FLOPS'],
    'training': ['TrainedEnsemble', 'train_ensemble'],
    'layer_ntk': ['layer_ntk', 'train_layer_ntk'],
    'sampling': ['MALAResult', 'mala', 'network_log_posterior', 'sample_network_posterior', 'effective_sample_size', 'split_rhat'],
    'mixture_cumulants': ['output_cumulants_from_metrics', 'output_cumulants_from_samples', 'pair_sum', 'sample_metrics'],
    'sgld': ['TLBPResult', 'TLBPWarning', 'NetworkLoss', 'default_nbeta', 'network_loss', 'sample_tlbp'],
    'llc': ['LLCEstimate', 'llc_from_samples', 'estimate_llc'],
    'learning_coefficients': ['quadratic_llc', 'ntk_llc', 'power_llc', 'normal_crossing_llc', 'reduced_rank_learning_coefficient'],
    'llc_correction': ['LLCExpansion', 'NetworkDerivatives', 'perturbative_llc', 'network_derivatives', 'network_llc_expansion'],
    'information_estimators': ['gaussian_plugin_information', 'edgeworth_plugin_information', 'ksg_information', 'scale_mixture_information', 'metric_information'],
    'llc_function_space': ['output_pushforward', 'function_space_llc', 'function_space_llc_from_samples', 'prior_reweighted_llc'],
    'datasets': ['two_class_mixture'],
    'estimators': ['k2', 'k4', 'jackknife', 'excess_kurtosis', 'vertex_from_metrics', 'conditional_next_metric', 'fit_inverse_width', 'relative_variance', 'nu_from_relative_variance'],
})
