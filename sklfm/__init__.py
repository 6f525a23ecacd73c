"""sklfm: Local Flow Matching for tabular data, with a scikit-learn interface."""

from ._density import LocalFlowMatching
from ._outlier import LocalFlowMatchingOutlierDetector

__version__ = "0.1.0"

__all__ = ["LocalFlowMatching", "LocalFlowMatchingOutlierDetector", "__version__"]
