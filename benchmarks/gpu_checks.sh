#!/usr/bin/env bash
# Issue 18's GPU checks as one prepared run for a lent H100/H200 (about 8 minutes of device time):
# the CUDA tests (nvJPEG decoding and torch k-means against the CPU paths), the embedding pipeline
# end to end ÷ GPU alone for ViT-B-32 and ViT-L-14 with JPEGs decoded on the GPU and on the CPU
# workers (fp16, batch 1024, every core), and torch k-means (50,000 centroids) ÷ faiss-cpu.
#
# The device image has torch/torchvision/numpy/pillow/pyarrow/matplotlib/scikit-learn but not
# open_clip_torch, webdataset, braceexpand, ftfy, wcwidth, timm's deps, faiss-cpu, polars or
# torchcodec: carry them as wheels (the device tool's README: `pip download --no-deps
# --only-binary=:all: --python-version 3.12 ... -d .whl NAME==VERSION`, `.whl` in carry) and
# start the command with its pip install line. Dagster and LanceDB are not needed here.
# Results land in $OUT (one file per step); the JSON lines are the figures for README.
set -uo pipefail
export HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# --noconftest: the suite's conftest builds the Dagster demo; these tests need only the library
$PY -m pytest -q --noconftest -o addopts="" -m gpu tests/laionlab/test_gpu_paths.py 2>&1 | tee "$OUT/pytest_gpu.txt"
for decode in device cpu; do
    timeout 240 $PY benchmarks/gpu_estimate.py --models ViT-B-32 ViT-L-14 --batch-size 1024 --n-images 16384 \
        --raw-images 4096 --skip-search --decode "$decode" 2>&1 | tee "$OUT/embed_$decode.txt"
done
timeout 240 $PY benchmarks/kmeans.py --gpu false --torch-device cuda --no-sklearn --n 1000000 --k 50000 --iters 2 \
    2>&1 | tee "$OUT/kmeans.txt"
