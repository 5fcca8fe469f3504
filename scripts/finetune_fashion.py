#!/usr/bin/env python
"""Fashion-FINE finetuning of FG-CLIP (or CLIP) towers: cross-modal or text-guided fashion retrieval.

    python scripts/finetune_fashion.py --task retrieval --data fashiongen_256_256_train.h5 --val_fraction 0.02 \\
        --init FGCLIP_DIR --output_dir runs/fashion_retrieval
    python scripts/finetune_fashion.py --task tgir --data captions/cap.{dress,shirt,toptee}.train.json \\
        --val captions/cap.{dress,shirt,toptee}.val.json --init FGCLIP_DIR --output_dir runs/fashion_tgir
    deepspeed --num_gpus 8 scripts/finetune_fashion.py --task retrieval ...

See `--help` for every option; the logic lives in `fgclip.fashion`.
"""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer also runs in data-loader workers

from fgclip.cli import run  # noqa: E402
from fgclip.fashion.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main))
