"""The public static exports of a CAVE datastack: layout, download, conversion, fetch."""
