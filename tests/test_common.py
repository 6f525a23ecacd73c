"""scikit-learn's estimator checks for every public estimator of sklfm.

New public estimators are picked up from ``sklfm`` by name (the outlier
detector is covered as soon as ``sklfm.LocalFlowMatchingOutlierDetector``
exists). Each estimator runs with the tiny configuration ``TINY`` from
conftest.py, passed through its public parameters only.
"""

import pytest
import sklearn
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklfm

from ._helpers import TINY

ESTIMATOR_NAMES = [
    "LocalFlowMatching",
    "LocalFlowMatchingImputer",
    "LocalFlowMatchingOutlierDetector",
    "LocalFlowMatchingOversampler",
]

# The one central list of expected failures: {estimator name: {check: reason}}.
# Empty on purpose; an entry needs a reason a reviewer would accept.
EXPECTED_FAILED_CHECKS = {}


def _tiny(cls):
    estimator = cls()
    names = estimator.get_params()
    params = {k: v for k, v in TINY.items() if k in names}
    if "estimator" in names:  # the imputer and the oversampler: a tiny model inside
        params["estimator"] = _tiny(sklfm.LocalFlowMatching)
    return estimator.set_params(**params)


def _estimators():
    return [_tiny(getattr(sklfm, name)) for name in ESTIMATOR_NAMES if hasattr(sklfm, name)]


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


def test_public_estimators_are_covered():
    # Guard: every public estimator in sklfm.__all__ is in ESTIMATOR_NAMES.
    public = {
        name
        for name in sklfm.__all__
        if isinstance(getattr(sklfm, name), type)
        and issubclass(getattr(sklfm, name), sklearn.base.BaseEstimator)
    }
    assert public <= set(ESTIMATOR_NAMES)
    assert "LocalFlowMatching" in public


@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# Checks that exist in scikit-learn but that parametrize_with_checks (1.9) does
# not yield by default: parameter validation, feature names and set_output.
EXTRA_CHECKS = [
    ("check_param_validation", False),
    ("check_dataframe_column_names_consistency", False),
    ("check_get_feature_names_out_error", True),
    ("check_transformer_get_feature_names_out", True),
    ("check_transformer_get_feature_names_out_pandas", True),
    ("check_set_output_transform", True),
    ("check_set_output_transform_pandas", True),
    ("check_global_output_transform_pandas", True),
]


def _extra_cases():
    for estimator in _estimators():
        for check_name, transformers_only in EXTRA_CHECKS:
            if transformers_only and not hasattr(estimator, "transform"):
                continue
            if not hasattr(estimator_checks, check_name):  # pragma: no cover
                continue
            yield pytest.param(
                estimator, check_name, id=f"{type(estimator).__name__}-{check_name}"
            )


# sklearn's set_output checks themselves mix named and unnamed inputs.
@pytest.mark.filterwarnings("ignore:X (does not have valid|has) feature names:UserWarning")
@pytest.mark.parametrize("estimator, check_name", list(_extra_cases()))
def test_extra_sklearn_checks(estimator, check_name):
    reason = _expected_failed_checks(estimator).get(check_name)
    if reason:
        pytest.xfail(reason)
    getattr(estimator_checks, check_name)(type(estimator).__name__, estimator)
