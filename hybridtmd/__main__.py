"""``python -m hybridtmd`` runs the command line."""

from .cli import app

app(prog_name="hybridtmd")
