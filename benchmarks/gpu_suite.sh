#!/usr/bin/env bash
# Every GPU measurement of the benchmarks (ViT-B/16 at 224 px, bf16 autocast, fused AdamW, SDPA): about
# 7 minutes on one H100, at most 9 (each benchmark has a time limit). Writes one JSON file per benchmark
# and suite.log (which ends with the markdown tables for RESULTS.md) to OUT_DIR: 7 files, 8 with --compile.
#
#   bash benchmarks/gpu_suite.sh OUT_DIR [--compile]
#
# Runs from any folder; needs no install (the repository goes on PYTHONPATH) and no network, and imports no
# DeepSpeed. Python packages it needs besides torch/torchvision/transformers: open_clip_torch (+ ftfy,
# wcwidth), webdataset (+ braceexpand); it checks them first and names any that are missing.
# --compile adds a stage-1 run with torch.compile (train_step-compiled.json).
set -uo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -lt 1 ] && exit 2 || exit 0
fi
out=$1
shift
compile=0
for option in "$@"; do
  case "$option" in
    --compile) compile=1 ;;
    *) echo "error: unknown option $option (only --compile)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out" || { echo "error: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
log="$out/suite.log"
: >"$log"

python3 - <<'EOF' 2>&1 | tee -a "$log"
import importlib, sys
missing = []
for module in ("torch", "torchvision", "transformers", "open_clip", "ftfy", "webdataset", "braceexpand"):
    try:
        importlib.import_module(module)
    except ImportError as error:
        missing.append(f"{module} ({error})")
if missing:
    sys.exit("error: missing Python packages: " + "; ".join(missing) + " - carry their wheels (see benchmarks/RESULTS.md)")
import torch
if not torch.cuda.is_available():
    sys.exit("error: no CUDA device is visible")
import open_clip, transformers
print(f"gpu {torch.cuda.get_device_name()}  torch {torch.__version__}  cuda {torch.version.cuda}  "
      f"transformers {transformers.__version__}  open_clip {open_clip.__version__}")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 2

failed=()
bench() {  # bench NAME SECONDS [options...]
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s) $(date -u +%H:%M:%S)" | tee -a "$log"
  timeout "$limit" python3 -m benchmarks.run "$name" --device cuda --quiet --output_dir "$out" "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  [ "$status" -eq 0 ] || { echo "!! $name exited with $status" | tee -a "$log"; failed+=("$name"); }
}

bench train_step 100                # stage 1 vs open_clip at batch 256; images/s, MFU
bench stage2 130                    # stage 2 vs stage 1 at batch 64; lever-off variants that do not fit are named
bench encoding 90                   # eval encoding vs open_clip; cache effect
bench lmm_generation 80             # POPE batched vs one at a time, ViT-B/16 tower + 1024-wide 8-layer LM
bench loss_memory 35                # loss memory per rank, global batch 1k-32k
bench data_loading 90               # loaders per worker; wait share of stage-1/2 runs with 8 workers
if [ "$compile" -eq 1 ]; then
  bench train_step 240 --compile --tag compiled
fi

echo "== tables for benchmarks/RESULTS.md" | tee -a "$log"
python3 -m benchmarks.tables "$out" 2>&1 | tee -a "$log"
echo "== done $(date -u +%H:%M:%S); files in $out" | tee -a "$log"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" | tee -a "$log"
  exit 1
fi
