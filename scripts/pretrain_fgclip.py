#!/usr/bin/env python
"""Two-stage FG-CLIP pretraining; with no arguments, the embedded default experiment on CPU.

    python scripts/pretrain_fgclip.py                                   # embedded default experiment
    python scripts/pretrain_fgclip.py --stage 1 --data train.jsonl --init tiny --output_dir runs/s1
    deepspeed --num_gpus 2 scripts/pretrain_fgclip.py --stage 2 --data ... --init runs/s1/final --output_dir runs/s2
    torchrun --nproc_per_node 2 scripts/pretrain_fgclip.py ...

See `--help` for every option; the logic lives in `fgclip.train`.
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer also runs in data-loader workers

from fgclip.cli import run  # noqa: E402
from fgclip.train.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main))
