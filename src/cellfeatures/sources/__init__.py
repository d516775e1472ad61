"""Sources of CAVE-shaped tables: sample (offline default), snapshot (local files), synthetic, cave."""

from cellfeatures.sources.base import Source, TableInfo, TablePart
from cellfeatures.sources.sample import SampleSource
from cellfeatures.sources.snapshot import SnapshotSource
from cellfeatures.sources.synthetic.cells import SyntheticSpec
from cellfeatures.sources.synthetic.snapshot import SyntheticSource

__all__ = ["SampleSource", "SnapshotSource", "Source", "SyntheticSource", "SyntheticSpec", "TableInfo", "TablePart"]
