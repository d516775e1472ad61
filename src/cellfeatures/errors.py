"""The exception tree of cellfeatures, in one place.

CellFeaturesError            base of everything raised on purpose
├── ConfigError              a config file or value is wrong (names the key)
├── SourceError              a table cannot be read from a source
│   └── TableNotFoundError   the source has no such table
├── SchemaError              collected data violates a pandera model (names table, column, rows)
├── IdentityError            nucleus_id <-> root_id bookkeeping is inconsistent
└── StoreError               the feature store cannot build, find or load a version
    ├── VersionNotFoundError
    └── DamagedVersionError  a published version's files or manifest no longer match

Every message names what the user has to look at: the table, the column, the file, the version.
"""

from __future__ import annotations


class CellFeaturesError(Exception):
    """Base class for errors raised deliberately by cellfeatures."""


class ConfigError(CellFeaturesError):
    """A configuration file or value is invalid."""


class SourceError(CellFeaturesError):
    """A table could not be read from a source."""


class TableNotFoundError(SourceError):
    """The source does not provide the requested table."""


class SchemaError(CellFeaturesError):
    """Collected data does not match its pandera model."""

    def __init__(self, table: str, message: str) -> None:
        super().__init__(f"table {table!r} failed validation:\n{message}")
        self.table = table


class IdentityError(CellFeaturesError):
    """Nucleus/root identity bookkeeping is inconsistent."""


class StoreError(CellFeaturesError):
    """The feature store could not build, find or load a version."""


class VersionNotFoundError(StoreError):
    """No feature version matches the given id or prefix."""


class DamagedVersionError(StoreError):
    """A published version's manifest is unreadable, or its files differ from what the manifest records."""
