"""Datasets other tools open without cellfeatures: MLCommons Croissant metadata and a Hugging Face layout.

`croissant.json` (Croissant 1.0 JSON-LD, written into every dataset): the two files with their SHA-256,
a record set per file with every field, its type and its description from the feature catalogue, the
label field, split semantics, license and citation of the MICrONS data, the feature version and source,
and responsible-AI fields (the card's known biases and limitations). `mlcroissant` validates it and
loads its records (tested).

`export_hf(ds, out)`: `data/<split>.parquet` for every split (`fold0_train`, `fold0_test`, ...,
`locked`) and a README.md whose YAML header (license, task, size, configs) lets
`datasets.load_dataset(out)` open it with named splits (tested).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from cellfeatures.errors import ConfigError

LICENSE = "https://creativecommons.org/licenses/by/4.0/"
CITATION = (
    "MICrONS Consortium et al. Functional connectomics spanning multiple areas of mouse visual cortex. "
    "Nature 640, 435-447 (2025). https://doi.org/10.1038/s41586-025-08790-w"
)
# The Croissant 1.0 JSON-LD context, as the specification publishes it.
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def _data_type(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "sc:Boolean"
    if dtype.is_integer():
        return "sc:Integer"
    if dtype.is_float():
        return "sc:Float"
    return "sc:Text"


def _fields(file: str, schema: Any, descriptions: dict[str, str]) -> list[dict[str, Any]]:
    record = file.removesuffix(".parquet")
    return [
        {
            "@type": "cr:Field",
            "@id": f"{record}/{name}",
            "name": name,
            "description": descriptions.get(name, name),
            "dataType": _data_type(dtype),
            "source": {"fileObject": {"@id": file}, "extract": {"column": name}},
        }
        for name, dtype in schema.items()
    ]


def croissant(card: dict[str, Any], manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The Croissant 1.0 description of a built dataset folder (data.parquet, splits.parquet, card)."""
    label = card["label"]
    catalogue = manifest["features"]
    describe = {
        f: f"{c.get('description', f)} (unit {c.get('unit')}, origin {c.get('origin')})"
        for f in card["features"]
        if (c := catalogue.get(f)) is not None
    }
    describe.update(
        {
            "nucleus_id": "stable nucleus id (nucleus_detection_v0): the cell's key across materializations",
            "root_id": f"root (segment) id of the cell in the feature version's materialization "
            f"({card['source'].get('materialization_version') or card['source'].get('version_label')})",
            label["column"]: f"label: {label['kind']} source {label['source']} ({', '.join(label['tables'])}) at "
            f"level {label['level']}",
        }
    )
    folds = ", ".join(c for c in pl.read_parquet_schema(folder / "splits.parquet") if c != "nucleus_id")
    split_text = (
        f"one column per fold ({folds}): the cell's role in that fold, train / test / buffer (left out: within "
        f"{card['spec']['split'].get('buffer_um')} um of a test cell) / locked (a held-out slab no model selection "
        f"touches); spatial blocks of {card['spec']['split'].get('block_um')} um, seed {card['spec']['split']['seed']}"
    )
    files = card["files"]
    distribution = [
        {
            "@type": "cr:FileObject",
            "@id": name,
            "name": name,
            "contentUrl": name,
            "encodingFormat": "application/x-parquet",
            "contentSize": f"{files[name]['bytes']} B",
            "sha256": files[name]["sha256"],
        }
        for name in ("data.parquet", "splits.parquet")
    ]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": f"cellfeatures-{card['name']}",
        "description": (
            f"Per-cell features of the MICrONS {card['source'].get('datastack')} connectome with the label "
            f"{label['column']} ({card['cells']:,} cells, {len(card['features'])} features), built by cellfeatures "
            f"from feature version {card['feature_version']}; dataset id {card['dataset_id']}."
        ),
        "url": "https://www.microns-explorer.org/cortical-mm3",
        "license": LICENSE,
        "citeAs": CITATION,
        "version": "1.0.0",
        "datePublished": str(manifest.get("built_at", ""))[:10] or None,
        "keywords": ["connectomics", "MICrONS", "cell types", "tabular classification"],
        "rai:dataCollection": (
            f"Computed by cellfeatures from CAVE annotation tables of {card['source'].get('datastack')} "
            f"({card['source'].get('description', '')}); every feature's origin (real, derived, synthetic) is in "
            f"its description."
        ),
        "rai:dataLimitations": "; ".join(card["leakage_risks"])
        + "; one cubic millimetre of one mouse's visual cortex: results may not transfer to other animals or areas",
        "rai:dataBiases": (
            "labels come from one labelled column (the manual source) or from models that may have been trained on "
            "these very cells (model tables can be in-sample); rare classes have few cells"
        ),
        "rai:personalSensitiveInformation": "none: mouse tissue",
        "distribution": distribution,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "data",
                "name": "data",
                "description": f"one row per cell; the label is {label['column']}",
                "key": {"@id": "data/nucleus_id"},
                "field": _fields("data.parquet", pl.read_parquet_schema(folder / "data.parquet"), describe),
            },
            {
                "@type": "cr:RecordSet",
                "@id": "splits",
                "name": "splits",
                "description": split_text,
                "field": _fields(
                    "splits.parquet",
                    pl.read_parquet_schema(folder / "splits.parquet"),
                    {"nucleus_id": "the cell (joins data.nucleus_id)"},
                ),
            },
        ],
    }


def write_croissant(card: dict[str, Any], manifest: dict[str, Any], folder: Path) -> Path:
    path = folder / "croissant.json"
    doc = {k: v for k, v in croissant(card, manifest, folder).items() if v is not None}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def hf_splits(frame: pl.DataFrame, folds: list[str]) -> dict[str, pl.DataFrame]:
    """Named splits: fold<k>_train / fold<k>_test per fold, and `locked` (the held-out slab), data columns only."""
    columns = [c for c in frame.columns if c not in folds and c != "locked"]
    out = {}
    for i, fold in enumerate(folds):
        for role in ("train", "test"):
            out[f"fold{i}_{role}"] = frame.filter(pl.col(fold) == role).select(columns)
    if "locked" in frame.columns:
        out["locked"] = frame.filter(pl.col("locked") == "test").select(columns)
    return out


def export_hf(ds: Any, out: Path) -> Path:
    """A folder `datasets.load_dataset(out)` opens with named splits; written aside, then renamed."""
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty: give a new folder for the Hugging Face export")
    splits = hf_splits(ds.frame(), ds.folds)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "data").mkdir(parents=True)
    try:
        for name, frame in splits.items():
            frame.write_parquet(tmp / "data" / f"{name}.parquet")
        (tmp / "README.md").write_text(hf_readme(ds, splits))
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def hf_readme(ds: Any, splits: dict[str, pl.DataFrame]) -> str:
    """The dataset card with the YAML header the Hugging Face hub and `datasets` read."""
    cells = ds.card["cells"]
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    size = next((name for limit, name in bounds if cells < limit), "1M<n<10M")
    lines = [
        "---",
        "license: cc-by-4.0",
        "task_categories:",
        "- tabular-classification",
        "tags:",
        "- connectomics",
        "- microns",
        "- cell-types",
        "size_categories:",
        f"- {size}",
        f"pretty_name: cellfeatures {ds.card['name']}",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for name in splits:
        lines += [f"  - split: {name}", f"    path: data/{name}.parquet"]
    lines += ["---", "", (ds.path / "CARD.md").read_text(), "", f"Cite the data as: {CITATION}", ""]
    return "\n".join(lines)
