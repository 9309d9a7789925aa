#!/usr/bin/env bash
# The one short GPU check of issue 24 (README "GPU extraction"), for a session lent a GPU:
# CUDA parity tests, then `python -m bench extract` on the shared real videos repeated to fill
# a few minutes. Run from the repository root; about 5 min on a 16-core H200 host at REPEAT=60.
#   VIDEOS=../shared/videos REPEAT=60 PYTHON=python OUT=/tmp/out bash bench/gpu_extract_check.sh
# On a lent device machine only the checkout travels (../shared does not): copy the videos into
# a git-ignored folder of the checkout (e.g. `.gpu_videos`, listed in .git/info/exclude), carry it,
# and pass VIDEOS=.gpu_videos. The device image may lack this project's packages: carry wheels
# (see the device tool's README) and set PYTHON to the interpreter that has them.
set -euo pipefail
PYTHON=${PYTHON:-python}
VIDEOS=${VIDEOS:-../shared/videos}
REPEAT=${REPEAT:-60}
OUT=${OUT:-bench_out/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$PWD}
nvidia-smi -L | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_prefetch.py \
    2>&1 | tail -5 | tee "$OUT/tests.txt"
videos_flag=()
if [ -d "$VIDEOS" ]; then videos_flag=("--videos=$VIDEOS"); else
    echo "no $VIDEOS: generated clips instead" | tee -a "$OUT/gpu.txt"; fi
/usr/bin/time -v "$PYTHON" -m bench extract "${videos_flag[@]}" "--repeat=$REPEAT" \
    --device=cuda 2> >(tee "$OUT/time.txt" >&2)
cp bench_out/results.json "$OUT/results.json"
grep -E "Maximum resident|Elapsed" "$OUT/time.txt" || true
