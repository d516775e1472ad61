"""`python -m cellfeatures.cli ...` runs the command line."""

from cellfeatures.cli import app

app()
