"""sklfm: Local Flow Matching for tabular data, with a scikit-learn interface."""

from ._density import LocalFlowMatching
from ._imputation import LocalFlowMatchingImputer
from ._outlier import LocalFlowMatchingOutlierDetector
from ._oversampling import LocalFlowMatchingOversampler
from ._persistence import InconsistentVersionWarning, load

__version__ = "0.1.0"

__all__ = [
    "InconsistentVersionWarning",
    "LocalFlowMatching",
    "LocalFlowMatchingImputer",
    "LocalFlowMatchingOutlierDetector",
    "LocalFlowMatchingOversampler",
    "__version__",
    "load",
]
