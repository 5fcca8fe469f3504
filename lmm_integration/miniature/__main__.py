"""`python -m lmm_integration.miniature`: see lmm_integration.miniature.run."""

import sys

from lmm_integration.miniature.run import main

sys.exit(main())
