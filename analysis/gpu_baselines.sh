#!/usr/bin/env bash
# Measures the GPU baselines of the paper comparison (analysis/records/h200-*.json) on a machine with one
# NVIDIA GPU: the paper's method (eager HF decode, batch 1, dynamic cache, fp32, plain attention) for the
# four GPT-2 sizes, and the stronger baseline (static KV cache + torch.compile "reduce-overhead", i.e. CUDA
# graphs) for GPT-2 and GPT-2 XL. Random weights of the cards' shapes (seed 0): decode time does not depend
# on weight values. Each run times enough tokens for a window of 2 s or more (NVML's energy counter needs at
# least 1 s: pimsim.baseline.measure.NVML_MIN_WINDOW_S), so the median is over contexts from 72 up to a few
# hundred tokens; GPT-2's 1,024-token context caps the fastest run (CUDA graphs, ~1 ms a token) at 952 tokens.
# Usage: bash analysis/gpu_baselines.sh [OUT_DIR] [PREFIX]  (default analysis/records, h200)
set -u
out=${1:-analysis/records}
prefix=${2:-h200}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', torch.__version__, \
'transformers', transformers.__version__, torch.cuda.get_device_name())"
run() {  # NAME TOKENS ARGS...: one record, each under its own time limit so one failure costs only itself
    local name=$1 tokens=$2; shift 2
    echo "=== $name: pimsim baseline --device cuda --prompt-len 64 --gen-tokens $tokens $*"
    timeout 300 python3 -m pimsim baseline --device cuda --prompt-len 64 --gen-tokens "$tokens" "$@" \
        --out "$out/$prefix-$name.json" 2>&1 | tail -20
}
run gpt2-paper 300 --model gpt2 --method paper --warmup 8
run gpt2-medium-paper 256 --model gpt2-medium --method paper --warmup 8
run gpt2-large-paper 200 --model gpt2-large --method paper --warmup 8
run gpt2-xl-paper 160 --model gpt2-xl --method paper --warmup 8
run gpt2-xl-compiled 420 --model gpt2-xl --method compiled --warmup 8
run gpt2-xl-compiled-fp16 560 --model gpt2-xl --method compiled --dtype fp16 --warmup 8
run gpt2-compiled 952 --model gpt2 --method compiled --warmup 8
