"""`python -m benchmarks.llava_miniature`: see benchmarks.llava_miniature.run."""

import sys

from benchmarks.llava_miniature.run import main

sys.exit(main())
