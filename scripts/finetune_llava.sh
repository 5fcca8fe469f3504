#!/usr/bin/env bash
# LLaVA-1.5 finetuning with an FG-CLIP vision tower: build -> stage A (projector) -> stage B (instruction tuning),
# each stage with the `deepspeed` launcher and the ZeRO-2 config shipped next to this script.
#
# Settings come from environment variables, or from KEY=VALUE arguments (which win):
#   scripts/finetune_llava.sh VISION=ckpt/fgclip-large LLM=ckpt/vicuna-7b-v1.5 \
#       PRETRAIN_DATA=data/blip_laion_cc_sbu_558k.json PRETRAIN_IMAGES=data/llava_pretrain/images \
#       FINETUNE_DATA=data/llava_v1_5_mix665k.json FINETUNE_IMAGES=data OUT=runs/llava-fgclip-7b
#
#   VISION            FG-CLIP / CLIP / exported tower folder (needed unless BUILT is given)
#   LLM               causal LM folder, e.g. a local vicuna-7b-v1.5 (needed unless BUILT is given)
#   BUILT             an already built LLaVA folder: skip the build step
#   VISION_FEATURES   hidden (default, LLaVA-1.5) or dense (FG-CLIP value-path features)
#   PRETRAIN_DATA     stage A conversations (LLaVA JSON/JSONL), PRETRAIN_IMAGES their image root
#   FINETUNE_DATA     stage B conversations, FINETUNE_IMAGES their image root
#   OUT               run folder (default runs/llava_fgclip): OUT/built, OUT/stage_a/final, OUT/stage_b/final
#   STAGES            which stages to run (default "A B")
#   NUM_GPUS          processes per stage (default: GPUs seen by nvidia-smi, else 2 CPU processes)
#   BATCH_A, ACCUM_A  per-device batch and accumulation of stage A (default 32, 1: 256 on 8 GPUs)
#   BATCH_B, ACCUM_B  the same for stage B (default 16, 1: 128 on 8 GPUs)
#   LR_A, LR_B        learning rates (default: the LLaVA-1.5 recipe's, from python -m lmm_integration.train --help)
#   EPOCHS            epochs per stage (default: lmm_integration.train's)
#   MAX_STEPS_A, MAX_STEPS_B  cap the steps of a stage (default -1: no cap)
#   MAX_LEN           model_max_length (default: lmm_integration.train's)
#   LORA=1            LoRA on the LM in stage B (rank LORA_R, alpha LORA_ALPHA: lmm_integration.train's defaults)
#   QLORA=4|8         QLoRA in stage B: LM in 4-bit NF4 or 8-bit (implies LoRA)
#   UNFREEZE_VISION=1 also train the vision tower in stage B
#   BF16=1            bfloat16 (default 1; set 0 on CPU), GRAD_CKPT=1 gradient checkpointing (default 1)
#   DS_CONFIG         DeepSpeed config (default scripts/zero2_llava.json)
#   NUM_WORKERS       data loader workers; SEED (defaults: lmm_integration.train's); MASTER_PORT (default 29511)
#   EXTRA_ARGS        more arguments for both stages of `python -m lmm_integration.train`
#   OVERWRITE=1       start again in an OUT that holds an earlier run (build --overwrite, --overwrite_output_dir)
#   DRY_RUN=1         print the commands without running them
#
# Re-running the same command continues: a finished build or stage is kept, a stopped stage resumes from its
# latest checkpoint (`--resume`), and a run with other inputs or options in OUT is refused (one line, exit 2).
# SIGTERM (how SLURM and Kubernetes stop a job) or Ctrl-C: the running stage finishes its step, saves
# OUT/stage_x/checkpoint-N, prints where, and the script exits with code 143 without starting the next stage.
# The signal goes to the training processes only (the deepspeed launcher would kill them 30 s after its own
# SIGTERM): on SLURM send it to this script with `#SBATCH --signal=B:TERM@300` (300 s before the time limit);
# on Kubernetes make terminationGracePeriodSeconds longer than a step plus a checkpoint save.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
for argument in "$@"; do
    case "$argument" in
        -h|--help) usage; exit 0 ;;
        [A-Z_]*=*) export "${argument?}" ;;
        *) echo "error: unknown argument '$argument' (give KEY=VALUE settings; see --help)" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "$0")" && pwd)"
fail() { echo "error: $1" >&2; exit 2; }

if [[ -z "${NUM_GPUS:-}" ]]; then
    NUM_GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    [[ "$NUM_GPUS" =~ ^[1-9][0-9]*$ ]] || NUM_GPUS=2
fi
OUT="${OUT:-runs/llava_fgclip}"
STAGES="${STAGES:-A B}"
DS_CONFIG="${DS_CONFIG:-$here/zero2_llava.json}"
VISION_FEATURES="${VISION_FEATURES:-hidden}"
LORA="${LORA:-0}"; QLORA="${QLORA:-}"
[[ -n "$QLORA" ]] && LORA=1
# learning rates, epochs, sequence length, workers, seed and LoRA sizes: lmm_integration.train's defaults (the one
# place for them) unless set here

[[ -f "$DS_CONFIG" ]] || fail "DeepSpeed config not found: $DS_CONFIG"
for stage in $STAGES; do
    case "$stage" in
        A) [[ -n "${PRETRAIN_DATA:-}" ]] || fail "PRETRAIN_DATA is not set (stage A conversations)" ;;
        B) [[ -n "${FINETUNE_DATA:-}" ]] || fail "FINETUNE_DATA is not set (stage B conversations)" ;;
        *) fail "STAGES must list A and/or B, got '$STAGES'" ;;
    esac
done

running=""        # the command being run: its own session and process group, so that signals reach it only from here
running_training=0
stopping=0
stop() {
    stopping=1
    [[ -n "$running" ]] || exit 143
    local workers=()
    if [[ "$running_training" == 1 ]]; then  # deepspeed -> launch.py -> one training process per GPU
        for launcher in $(pgrep -P "$running" || true); do
            for worker in $(pgrep -P "$launcher" || true); do workers+=("$worker"); done
        done
    fi
    if ((${#workers[@]})); then
        echo "stop requested: the training processes finish their step and save a checkpoint" >&2
        kill -TERM "${workers[@]}" 2>/dev/null || true
    else
        kill -TERM -- "-$running" 2>/dev/null || true  # nothing trains yet: stop the command
    fi
}
trap stop TERM INT

# Whether a process of group $1 still runs. Zombies do not count: `kill -0 -- -PGID` is true for them, and where
# PID 1 is slow to reap orphans (containers) a data-loader worker's zombie would keep this script waiting.
group_alive() {
    ps -e -o pgid= -o stat= | awk -v group="$1" '$1 == group && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

run() {
    echo "+ $*"
    [[ "${DRY_RUN:-0}" == 1 ]] && return 0
    setsid "$@" &
    running=$!
    local status=0
    wait "$running" || status=$?
    while kill -0 "$running" 2>/dev/null; do  # a trapped signal ends `wait` early: wait for the real exit
        status=0
        wait "$running" || status=$?
    done
    if [[ "$stopping" == 1 ]]; then
        while group_alive "$running"; do sleep 1; done  # until every process has saved and exited
    fi
    running=""
    if [[ "$stopping" == 1 ]]; then
        echo "stopped; run the same command again to continue" >&2
        exit 143
    fi
    return "$status"
}

common=(--deepspeed "$DS_CONFIG" ${EPOCHS:+--epochs "$EPOCHS"} ${MAX_LEN:+--model_max_length "$MAX_LEN"}
        ${NUM_WORKERS:+--num_workers "$NUM_WORKERS"} ${SEED:+--seed "$SEED"})
[[ "${BF16:-1}" == 1 ]] && common+=(--bf16)
[[ "${GRAD_CKPT:-1}" == 1 ]] && common+=(--gradient_checkpointing)
if [[ "${OVERWRITE:-0}" == 1 ]]; then common+=(--overwrite_output_dir); build_flags=(--overwrite)
else common+=(--resume); build_flags=(--keep_existing); fi
read -r -a extra <<< "${EXTRA_ARGS:-}"
launcher=(deepspeed --num_gpus "$NUM_GPUS" --master_port "${MASTER_PORT:-29511}" --module lmm_integration.train)

model="${BUILT:-}"
if [[ -z "$model" ]]; then
    [[ -n "${VISION:-}" && -n "${LLM:-}" ]] || fail "set VISION and LLM (or BUILT, an already built LLaVA folder)"
    model="$OUT/built"
    run python -m lmm_integration.build --vision "$VISION" --llm "$LLM" --output_dir "$model" \
        --vision_features "$VISION_FEATURES" "${build_flags[@]}"
fi

running_training=1
for stage in $STAGES; do
    if [[ "$stage" == A ]]; then
        run "${launcher[@]}" --stage A --model "$model" --data "$PRETRAIN_DATA" ${PRETRAIN_IMAGES:+--image_root "$PRETRAIN_IMAGES"} \
            --output_dir "$OUT/stage_a" --batch_size "${BATCH_A:-32}" --grad_accum "${ACCUM_A:-1}" ${LR_A:+--lr "$LR_A"} \
            --max_steps "${MAX_STEPS_A:--1}" "${common[@]}" ${extra[@]+"${extra[@]}"}
        model="$OUT/stage_a/final"
    else
        lora=()
        [[ "$LORA" == 1 ]] && lora+=(--lora ${LORA_R:+--lora_r "$LORA_R"} ${LORA_ALPHA:+--lora_alpha "$LORA_ALPHA"})
        [[ -n "$QLORA" ]] && lora+=(--qlora "$QLORA")
        [[ "${UNFREEZE_VISION:-0}" == 1 ]] && lora+=(--unfreeze_vision)
        run "${launcher[@]}" --stage B --model "$model" --data "$FINETUNE_DATA" ${FINETUNE_IMAGES:+--image_root "$FINETUNE_IMAGES"} \
            --output_dir "$OUT/stage_b" --batch_size "${BATCH_B:-16}" --grad_accum "${ACCUM_B:-1}" ${LR_B:+--lr "$LR_B"} \
            --max_steps "${MAX_STEPS_B:--1}" ${lora[@]+"${lora[@]}"} "${common[@]}" ${extra[@]+"${extra[@]}"}
        model="$OUT/stage_b/final"
    fi
done
echo "final model: $model"
