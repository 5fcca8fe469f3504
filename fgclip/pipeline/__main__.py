"""`python -m fgclip.pipeline`: see `fgclip.pipeline.cli`."""

import sys

from fgclip.pipeline.cli import main

sys.exit(main())
