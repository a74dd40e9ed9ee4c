"""Pure decision modules: generator, features, classifier, calibration, Bayesian fusion, drift,
validation, routing and the one decision function. Never imports Dagster."""
