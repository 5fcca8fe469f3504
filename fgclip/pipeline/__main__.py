"""`python -m fgclip.pipeline`: see `fgclip.pipeline.cli`."""

import sys

from fgclip.cli import run
from fgclip.pipeline.cli import main

sys.exit(run(main))
