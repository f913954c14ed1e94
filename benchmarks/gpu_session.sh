#!/usr/bin/env bash
# The prepared GPU session: run it as it is, from the repository root, on a lent GPU machine.
#
#   1. Here, once (network to the package registry; the GPU machine has none):
#        bash benchmarks/gpu_session.sh wheels        # the packages ssl_mae needs that the GPU image lacks, into .whl/
#   2. There, one command (the device tool: carry .whl, timeout_s 600):
#        bash benchmarks/gpu_session.sh               # PHASE=all: throughput, then unseen styles in the minutes left
#      or two (a 10-minute limit a command): `... throughput`, then `... unseen`.
#
# Everything it prints and measures goes under $OUT (the device tool brings that folder back): nvidia-smi.txt,
# gpu_throughput.txt, unseen_styles.txt and session.log. BUDGET_S (default 540 s) bounds the whole command: the
# unseen-styles run is sized to what is left after the throughput table.
# DRY_RUN=1 runs every step with tiny settings on whatever machine it is (a test does this on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE=${1:-all}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-540}; DRY_RUN=${DRY_RUN:-0}; PY=${PYTHON:-python3}
WORK=$(mktemp -d)  # data sets and run folders: large, and not brought back
START=$(date +%s)
log() { echo "[gpu_session $(( $(date +%s) - START ))s] $*" | tee -a "$OUT/session.log"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# packages the GPU image lacks (its own torch, timm, accelerate, opencv, ... stay): fastai and what importing
# ssl_mae.learner, ssl_mae.pseudo and ssl_mae.cli loads (python -X importtime, checked against the image's list)
WHEELS="fastai==2.8.12 fastcore==2.2.41 fasttransform==0.0.5 plum-dispatch==2.9.0 beartype fastprogress==1.1.6
fastdownload==0.0.8 python-fasthtml starlette uvicorn itsdangerous oauthlib python-multipart beautifulsoup4 soupsieve
httpx2 httpcore2 truststore torchmetrics"

if [ "$PHASE" = wheels ]; then
  mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  for w in $WHEELS; do
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl "$w"
  done
  ls .whl; exit 0
fi

# 1. what runs: the machine's Python with the carried wheels (never over its own torch), and ssl_mae from this tree
if ! $PY -c 'import fastai' 2>/dev/null; then
  [ -d .whl ] || { log "fastai is missing and no .whl/ was carried: run 'bash benchmarks/gpu_session.sh wheels' first"; exit 2; }
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
$PY -c 'import ssl_mae.learner, ssl_mae.pseudo, torch; print("ssl_mae", ssl_mae.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee -a "$OUT/session.log"
(nvidia-smi || echo "no nvidia-smi") > "$OUT/nvidia-smi.txt" 2>&1

if [ "$DRY_RUN" = 1 ]; then
  TP_ARGS="--preset tiny --img-size 32 --batch-size 8 --steps 2 --warmup 1 --n-subjects 12 patch_size=8"
  US_ARGS="--n-subjects 12 --img-size 32 --pretrain 1 --steps 4 --arms b patch_size=8"
else
  TP_ARGS=""  # its GPU defaults: vit_base at 224 px, batch 128, fp32 / bf16 / bf16+compile
  US_ARGS=""  # sized below from the minutes left
fi

# 2. training speed: loop against bare step, fp32 / bf16 / bf16 + compile, MFU
if [ "$PHASE" = all ] || [ "$PHASE" = throughput ]; then
  log "gpu_throughput.py $TP_ARGS"
  $PY benchmarks/gpu_throughput.py --out "$WORK/gpu_throughput" $TP_ARGS 2>&1 | tee "$OUT/gpu_throughput.txt"
fi

# 3. unseen morph styles at the largest scale the minutes left allow (bf16, compiled, fed loaders)
if [ "$PHASE" = all ] || [ "$PHASE" = unseen ]; then
  [ "$PHASE" = unseen ] && START=$(date +%s)
  if [ -z "$US_ARGS" ]; then
    L=$(left)
    # measured on 2 CPU cores, making the data set is one core's work (about 3 min for 1,200 subjects at 112 px,
    # four times that at 224 px): it, not the GPU, bounds the scale here
    if [ "$L" -gt 420 ]; then US_ARGS="--n-subjects 1200 --img-size 112 --pretrain 50 --steps 2000 --arms abd --seeds 0"
    elif [ "$L" -gt 240 ]; then US_ARGS="--n-subjects 600 --img-size 112 --pretrain 50 --steps 2000 --arms ab"
    else log "only ${L}s left: no unseen-styles run"; exit 0; fi
    US_ARGS="$US_ARGS precision=bf16 compile=True"
  fi
  log "unseen_styles.py $US_ARGS"
  $PY benchmarks/unseen_styles.py --out "$WORK/unseen_styles" $US_ARGS 2>&1 | tee "$OUT/unseen_styles.txt"
fi
log "done"
