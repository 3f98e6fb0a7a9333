#!/usr/bin/env bash
# Serve a student with vLLM outside Docker, in vLLM's own environment (never daggerlm's: CI does not install it):
#   python -m venv ~/vllm-env && ~/vllm-env/bin/pip install vllm==0.33.0
#   infra/vllm-serve.sh Qwen/Qwen3-8B 8000
# then point params at it: student.kind: openai, student.server.launch: none,
# student.server.endpoint.base_url: http://127.0.0.1:8000/v1 (and student.server.lora: true for adapters).
# Or let each stage start it: student.server.launch: vllm, student.server.command: ~/vllm-env/bin/vllm.
set -euo pipefail
model=${1:?base model or checkpoint}; port=${2:-8000}
export VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
exec "${VLLM:-$HOME/vllm-env/bin/vllm}" serve "$model" --host 127.0.0.1 --port "$port" \
  --enable-lora --max-lora-rank 64 --gpu-memory-utilization 0.85
