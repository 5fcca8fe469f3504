#!/usr/bin/env bash
# Referring-expression localisation of a LLaVA folder (RefCOCO/+/g-style JSONL): Acc@IoU>=0.5, mean IoU.
#
# usage: scripts/eval_localization.sh LLAVA_DIR DATA_JSONL IMAGE_DIR OUT_DIR [more `python -m eval.localization` options]
#   DATA_JSONL  {id, image, expression, bbox (normalised x1,y1,x2,y2)} per line; make it from the public
#               RefCOCO release with `python -m eval.lmm.refer --refs ... --instances ... --split testA --out ...`
#   IMAGE_DIR   the images it names (COCO train2014 for RefCOCO/+/g)
# env: BATCH_SIZE (default 16)
# Re-running with the same OUT_DIR resumes from OUT_DIR/answers.jsonl. Scores: results.{json,md}, localization.png.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ $# -lt 4 ]]; then usage >&2; echo "error: need LLAVA_DIR DATA_JSONL IMAGE_DIR OUT_DIR" >&2; exit 2; fi
model=$1 data=$2 images=$3 out=$4
shift 4

exec python -m eval.localization --model "$model" --data "$data" --images "$images" --out "$out" \
    --batch-size "${BATCH_SIZE:-16}" "$@"
