"""What a dataset is made of, before it is built: name, label source and level, filters, features, split.

Pure data and validation; nothing here reads a store or writes files."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cellfeatures._util.names import check_name, did_you_mean
from cellfeatures.config.model import Config
from cellfeatures.datasets.splits import SplitSpec
from cellfeatures.errors import ConfigError

FILTERS = {
    "neurons": "label class is excitatory or inhibitory",
    "attributable": "the nucleus has its own root (no merge, inside the segmentation)",
    "proofread_dendrite": "dendrite proofread (proof_status_dendrite)",
    "proofread_axon": "axon proofread (proof_status_axon)",
}


EXPORT_FORMATS = ("parquet", "csv", "arrow", "npz", "hf")  # hf: a folder datasets.load_dataset opens


# A dataset's split when its spec says nothing: the headline settings of configs/sample.toml (spatial,
# 5 folds, 50 um blocks, 15 um buffer; SplitSpec's defaults) plus the locked test slab.
HEADLINE_SPLIT: dict[str, Any] = {"locked_fraction": 0.15}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    label: str = "manual"
    level: str = "type"
    feature_version: str = "latest"
    filters: tuple[str, ...] = ("neurons", "attributable")
    origins: tuple[str, ...] = ("real", "derived")  # synthetic features only when asked for
    families: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # explicit feature names or globs (after origin/family selection)
    exclude: tuple[str, ...] = ("pos_*", "qc_*")  # positions would let a model memorise places; qc flags are constant
    min_class_size: int = 5
    allow_leaky: tuple[str, ...] = ()
    split: SplitSpec = field(default_factory=lambda: SplitSpec(**HEADLINE_SPLIT))

    def __post_init__(self) -> None:
        check_name(self.name, "dataset name")

    @classmethod
    def from_dict(cls, name: str, block: dict[str, Any]) -> DatasetSpec:
        block = dict(block)
        split_block = block.pop("split", {})
        if split_block.get("column_box_um") is not None:
            split_block["column_box_um"] = tuple(split_block["column_box_um"])
        try:
            split = SplitSpec(**{**HEADLINE_SPLIT, **split_block})
            tuples = {k: tuple(v) for k, v in block.items() if isinstance(v, list)}
            return cls(name=name, split=split, **{**block, **tuples})
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"[dataset.{name}]: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spec_from_config(config: Config, name: str, overrides: dict[str, Any]) -> DatasetSpec:
    """The spec of `[dataset.<name>]` in a config, with command-line style overrides (None = not given).

    A name the config lacks is a new dataset only when the overrides define it (at least a label).
    """
    blocks = config.raw.get("dataset", {})
    block = dict(blocks.get(name, {}))
    split = dict(block.pop("split", {}))
    overrides = dict(overrides)
    for key in ("strategy", "folds", "seed", "block_um", "buffer_um"):
        if overrides.get(key) is not None:
            split[key] = overrides.pop(key)
    block.update({k: v for k, v in overrides.items() if v is not None})
    if not (set(block) - {"feature_version"}) and name not in blocks:
        raise ConfigError(
            f"no [dataset.{name}] in {config.path}{did_you_mean(name, blocks)}; give --label and --level to define "
            f"a new one (have: {', '.join(blocks) or 'none'})"
        )
    return DatasetSpec.from_dict(name, {**block, "split": split})
