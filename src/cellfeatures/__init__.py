"""cellfeatures: versioned per-cell feature matrices for CAVE connectome datastacks (MICrONS minnie65)."""

from cellfeatures.runtime import tune_allocator

tune_allocator()  # before anything imports polars (see runtime.py)

__version__ = "0.1.0"

# Bumped whenever a pipeline's output for the same inputs changes; part of every feature-version hash.
PIPELINE_CODE_VERSION = "2"
