"""`python -m benchmarks.llava_miniature`: see benchmarks.llava_miniature.run."""

import sys

from benchmarks.llava_miniature.run import main
from fgclip.cli import run

sys.exit(run(main))
