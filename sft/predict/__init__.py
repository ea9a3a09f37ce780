"""Predictors: Gaussian (GP posterior, NTK gradient flow / descent), their finite-width corrections, and
kernel renormalization of the Bayesian posterior.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'infinite_width': ['GPPosterior', 'EnsemblePrediction', 'gp_posterior', 'ntk_flow', 'ntk_gradient_descent', 'gd_stability_limit'],
    'posterior_correction': ['quartic_cumulant_from_vertex', 'posterior_mean_correction', 'posterior_cov_correction', 'kernel_shift_correction', 'NetworkPosteriorCorrection', 'network_posterior_correction', 'ImportancePosterior', 'importance_posterior'],
    'nearly_gaussian_posterior': ['VERTICES', 'PosteriorTerm', 'posterior_series', 'posterior_series_latex', 'PerturbativePosterior', 'perturbative_posterior'],
    'sampled_posterior': ['SampledPosterior', 'sampled_network_posterior', 'network_prior_cumulants'],
    'gd_correction': ['GDCorrection', 'gd_mean_correction', 'population_correction'],
    'generated_gd': ['RULES', 'SYMMETRIES', 'GDTerm', 'gd_mean_series', 'gd_cov_series', 'gd_series_latex', 'GeneratedGDMean', 'generated_gd_mean', 'GeneratedGDCov', 'generated_gd_cov'],
    'kink_crossing': ['KinkNTKChange', 'kink_ntk_change', 'crossing_integral'],
    'kink_crossing_deep': ['KinkNTKChangeDeep', 'kink_ntk_change_deep'],
    'trained_ensemble': ['TrainedEnsemblePrediction', 'trained_ensemble_gd', 'trained_ensemble_flow', 'ntk_change_gd', 'ntk_change_by_layer_gd', 'ntk_change_by_layer_flow', 'ensemble_test_error'],
    'hyperparameters': ['log_marginal_likelihood', 'HyperparameterFit', 'fit_hyperparameters'],
    'information': ['gaussian_entropy', 'gaussian_channel_information', 'gaussian_mutual_information', 'negentropy_from_cumulants', 'LayerInformation', 'layer_information', 'scalar_channel_information', 'tlbp_output_covariance'],
    'neuron_sampling_posterior': ['LargePosterior', 'large_posterior'],
    'hmc_posterior': ['HMCPosterior', 'HMCWarning', 'hmc_network_posterior'],
    'kernel_renormalization': ['Saddle', 'Prediction', 'saddle_point', 'bpkr_posterior', 'exact_posterior', 'gibbs_sample', 'GibbsResult'],
})
