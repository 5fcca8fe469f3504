"""`python -m fgclip.pipeline`: see `fgclip.pipeline.cli`."""

from fgclip.pipeline.cli import cli

cli()
