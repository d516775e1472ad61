"""The package version and the pipeline code version (part of every feature-version hash).

Kept apart from `cellfeatures/__init__.py` so that any layer can read them without importing the
package root (which re-exports the upper layers: importing it from below would close a cycle).
"""

__version__ = "0.1.0"

# Bumped whenever a pipeline's output for the same inputs changes; part of every feature-version hash.
# 3: a synapse table fetched for chosen cells gives every other cell null synapse features (not partial counts).
# 4: feature caveats (config `caveats`) kept in the manifest.
# 5: synapse aggregates from compiled kernels (a distance mean may move in its last bit).
PIPELINE_CODE_VERSION = "5"
