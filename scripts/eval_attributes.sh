#!/usr/bin/env bash
# Attribute analysis of a LLaVA folder: yes/no and multiple-choice questions from region records with
# hard negatives (data-format.md section 1, e.g. FineHARD or the output of `fgclip.pipeline --steps negatives`).
#
# usage: scripts/eval_attributes.sh LLAVA_DIR DATA_JSONL OUT_DIR [more `python -m eval.attributes` options]
#   image paths in DATA_JSONL are relative to its folder unless --images DIR is given
# env: BATCH_SIZE (default 16)
# Re-running with the same OUT_DIR resumes from OUT_DIR/answers.jsonl. Scores: results.{json,md}, attributes.png.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ $# -lt 3 ]]; then usage >&2; echo "error: need LLAVA_DIR DATA_JSONL OUT_DIR" >&2; exit 2; fi
model=$1 data=$2 out=$3
shift 3

exec python -m eval.attributes --model "$model" --data "$data" --out "$out" --batch-size "${BATCH_SIZE:-16}" "$@"
