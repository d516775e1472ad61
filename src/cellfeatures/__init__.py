"""cellfeatures: versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65)."""

__version__ = "0.1.0"

# Bumped whenever a pipeline's output for the same inputs changes; part of every feature-version hash.
PIPELINE_CODE_VERSION = "1"
