#!/usr/bin/env bash
# Every encoder benchmark whose data is configured, for one model folder, each into OUT_DIR/<benchmark>.
#
# usage: scripts/eval_encoder.sh MODEL_DIR OUT_DIR
#   MODEL_DIR  an FG-CLIP folder, a stock Hugging Face CLIP folder (baseline) or an official FG-CLIP release
# Data, by environment variable (a benchmark runs only when its variables are set):
#   FGOVD_DIR, FGOVD_IMAGES            FG-OVD files (1_attributes, 2_attributes, 3_attributes, shuffle_negatives:
#                                      the public .json documents or their .jsonl form) and the COCO root
#                                      their image paths are relative to
#   COCO_INSTANCES, COCO_IMAGES        instances_val2017.json and val2017/ (box classification)
#   LVIS_INSTANCES, LVIS_IMAGES        lvis_v1_val.json and its image root (box classification)
#   COCO_CAPTIONS, COCO_CAPTION_IMAGES Karpathy dataset_coco.json (test split: COCO 5k) and the COCO root
#   FLICKR_CAPTIONS, FLICKR_IMAGES     Karpathy dataset_flickr30k.json (test split) and flickr30k-images/
#   SHAREGPT4V_JSON, SHAREGPT4V_IMAGES ShareGPT4V caption JSON (first 1,000 items, long captions) and its root
#   DCI_ANNOTATIONS, DCI_IMAGES        DCI annotations/ folder (long captions) and the images it names
#                                      (default: the photos/ folder beside it)
#   IMAGENET_VAL, IMAGENET_CLASSNAMES  ImageNet val folder per class and a class-name file (or imagenet1k)
#   FASHIONGEN_JSONL                   FashionGen-style items (eval/common/fashion_data.py)
# env: BATCH_SIZE (default 64). Compare models afterwards: python -m eval.report OUT_A OUT_B --out REPORT
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [[ ${1:-} == -h || ${1:-} == --help ]]; then usage; exit 0; fi
if [[ $# -ne 2 ]]; then usage >&2; echo "error: need MODEL_DIR OUT_DIR" >&2; exit 2; fi
model=$1 out=$2
common=(--model "$model" --batch-size "${BATCH_SIZE:-64}")
ran=0

run() {  # run NAME MODULE ARGS...: one benchmark into OUT_DIR/NAME
    local name=$1 module=$2
    shift 2
    echo "== $name"
    # explicit exit: errexit does not apply inside the `[[ ]] && run ...` lists below
    python -m "eval.$module" "${common[@]}" --out "$out/$name" "$@" || exit $?
    ran=$((ran + 1))
}

if [[ -n ${FGOVD_DIR:-} ]]; then
    files=()
    for stem in 1_attributes 2_attributes 3_attributes shuffle_negatives; do
        for candidate in "$FGOVD_DIR"/"$stem".json "$FGOVD_DIR"/"$stem"*.jsonl; do
            [[ -f $candidate ]] && files+=("$candidate") && break
        done
    done
    if [[ ${#files[@]} -eq 0 ]]; then echo "error: no FG-OVD *_attributes*.json(l) files in $FGOVD_DIR" >&2; exit 2; fi
    run fgovd fgovd --data "${files[@]}" ${FGOVD_IMAGES:+--images "$FGOVD_IMAGES"}
fi
[[ -n ${COCO_INSTANCES:-} ]] && run box_cls_coco box_cls --data "$COCO_INSTANCES" ${COCO_IMAGES:+--images "$COCO_IMAGES"}
[[ -n ${LVIS_INSTANCES:-} ]] && run box_cls_lvis box_cls --data "$LVIS_INSTANCES" ${LVIS_IMAGES:+--images "$LVIS_IMAGES"}
[[ -n ${COCO_CAPTIONS:-} ]] && run retrieval_coco retrieval --data "$COCO_CAPTIONS" \
    ${COCO_CAPTION_IMAGES:+--images "$COCO_CAPTION_IMAGES"}
[[ -n ${FLICKR_CAPTIONS:-} ]] && run retrieval_flickr retrieval --data "$FLICKR_CAPTIONS" \
    ${FLICKR_IMAGES:+--images "$FLICKR_IMAGES"}
[[ -n ${SHAREGPT4V_JSON:-} ]] && run retrieval_sharegpt4v retrieval --data "$SHAREGPT4V_JSON" --long --limit 1000 \
    ${SHAREGPT4V_IMAGES:+--images "$SHAREGPT4V_IMAGES"}
[[ -n ${DCI_ANNOTATIONS:-} ]] && run retrieval_dci retrieval --data "$DCI_ANNOTATIONS" --long \
    ${DCI_IMAGES:+--images "$DCI_IMAGES"}
[[ -n ${IMAGENET_VAL:-} ]] && run zeroshot_imagenet zeroshot --data "$IMAGENET_VAL" \
    ${IMAGENET_CLASSNAMES:+--classnames "$IMAGENET_CLASSNAMES"}
[[ -n ${FASHIONGEN_JSONL:-} ]] && run fashiongen fashion --task fashiongen --data "$FASHIONGEN_JSONL" --embedding both

if [[ $ran -eq 0 ]]; then
    echo "error: no benchmark data configured; set e.g. FGOVD_DIR (see --help)" >&2
    exit 2
fi
echo "ran $ran benchmark(s) -> $out"
