"""Cell-type labels: label sources (manual and model tables), loading them harmonised, and agreement.

The vocabulary itself (spellings -> class / subclass / type) is `cellfeatures.vocab`, a bottom-layer
module, because sources (the sample generator) and pipelines use it too.
"""

from cellfeatures.labels.agreement import Agreement, agreement
from cellfeatures.labels.sources import LabelSet, LabelSourceSpec, label_sources, load_labels

__all__ = ["Agreement", "LabelSet", "LabelSourceSpec", "agreement", "label_sources", "load_labels"]
