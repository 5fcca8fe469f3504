#!/usr/bin/env bash
# POPE hallucination evaluation of a LLaVA folder on the three public splits (random, popular, adversarial).
#
# usage: scripts/eval_pope.sh LLAVA_DIR POPE_DIR IMAGE_DIR OUT_DIR [more `python -m eval.pope` options]
#   POPE_DIR   folder with the question files (coco_pope_{random,popular,adversarial}.json from the POPE
#              release, or pope_*.jsonl from `python -m eval.pope --build-questions`)
#   IMAGE_DIR  the images they name (COCO val2014 for the public files)
# env: BATCH_SIZE (default 16)
# Re-running with the same OUT_DIR resumes from OUT_DIR/answers/. Scores: OUT_DIR/results.{json,md}, pope.png.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ $# -lt 4 ]]; then usage >&2; echo "error: need LLAVA_DIR POPE_DIR IMAGE_DIR OUT_DIR" >&2; exit 2; fi
model=$1 pope_dir=$2 images=$3 out=$4
shift 4

questions=()
for split in random popular adversarial; do
    for candidate in "$pope_dir"/*pope_"$split".json "$pope_dir"/*pope_"$split".jsonl; do
        if [[ -f $candidate ]]; then questions+=("$candidate"); break; fi
    done
done
if [[ ${#questions[@]} -eq 0 ]]; then
    echo "error: no *pope_{random,popular,adversarial}.json(l) files in $pope_dir" >&2
    exit 2
fi

exec python -m eval.pope --questions "${questions[@]}" --model "$model" --images "$images" --out "$out" \
    --batch-size "${BATCH_SIZE:-16}" "$@"
