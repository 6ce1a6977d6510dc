#!/usr/bin/env bash
# Regenerate the images' lock files from pyproject.toml and docker/*.in: every package pinned, with its hashes,
# for Python 3.11 on x86_64 Linux. Needs uv (pip install uv); run it after changing a dependency.
#   TORCH_CPU_WHEELS  where torch's CPU wheels are listed (default: the PyTorch index)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 -q
        --index-url https://pypi.org/simple --custom-compile-command docker/lock.sh)
"$UV" pip compile "${common[@]}" docker/build.in -o docker/build.lock
"$UV" pip compile "${common[@]}" --find-links "${TORCH_CPU_WHEELS:-https://download.pytorch.org/whl/cpu/torch/}" \
  pyproject.toml docker/controller.in -o docker/controller.lock
# the trainer image's base holds torch with its CUDA packages: resolved against, never installed again
in_base=()
for name in torch triton nvidia-cublas-cu12 nvidia-cuda-cupti-cu12 nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 \
    nvidia-cudnn-cu12 nvidia-cufft-cu12 nvidia-curand-cu12 nvidia-cusolver-cu12 nvidia-cusparse-cu12 \
    nvidia-nccl-cu12 nvidia-nvjitlink-cu12 nvidia-nvtx-cu12; do
  in_base+=(--no-emit-package "$name")
done
"$UV" pip compile "${common[@]}" "${in_base[@]}" --extra lm pyproject.toml docker/trainer.in -o docker/trainer.lock
