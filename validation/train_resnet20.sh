#!/usr/bin/env bash
# Training behind a blur layer, and similarity regularization, on the published CIFAR-10 ResNet-20.
#
# 1. Fine-tune the published ResNet-20 for a few epochs on 10,000 CIFAR-10 training JPEGs behind blur
#    σ = 1.5 and σ = 1.0, and without a defense (the control: the same recipe, no blur). Audit each next to
#    the published model on the exact test images: clean accuracy, hybrid f_rev, f0.5 of minimal DDN
#    perturbations and their median size, the corruption accuracy per frequency band and a Gaussian-noise
#    curve. The claims of Li et al. (2018, the blur paper): a blur model has a lower f_rev and f0.5 and is
#    more robust to noise and to high-frequency corruptions.
# 2. Similarity regularization with a teacher target (the σ = 1.5 model's layer3; no neural recordings are
#    at hand): students fine-tuned from the published model with α = 0, 1, 10 and a shuffled target at
#    α = 10; RSA of each student's layer3 to the teacher's, and their noise curves. This checks the
#    mechanism (RSA to the target rises with α), not the paper's neural result.
#
# Sizes can be reduced for a busy machine: N_HYBRID (500), N_MINIMAL (200), N_CORRUPT (300), SEVERITIES (1,3,5),
# BLUR10 (1: also train σ = 1.0), SIM_LIMIT (5000), SIM_EPOCHS (2), N_RSA (300).
#
# Needs ROBAUDIT_VALIDATION_DATA (../shared/data) and the CIFAR-10 JPEGs extracted to CIFAR (an image folder
# with train/ and test/). Usage: validation/train_resnet20.sh OUT [CIFAR]
set -euo pipefail
OUT=${1:?usage: train_resnet20.sh OUT [CIFAR_IMAGE_FOLDER]}
CIFAR=${2:-/work/data/CIFAR-10-images}
DATA=${ROBAUDIT_VALIDATION_DATA:?set ROBAUDIT_VALIDATION_DATA to the validation data folder}
W=$DATA/weights/cifar10_resnet20.th
TEST=npz:$DATA/cifar10/test_exact_1017.npz
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/log.txt"; }
timed() { local s=$SECONDS; "$@" >/dev/null 2>>"$OUT/stderr.txt"; log "$(( SECONDS - s )) s: ${*:1:4}"; }

train() {  # NAME EXTRA...
  local name=$1; shift
  [ -f "$OUT/runs/$name/model.safetensors" ] && return
  timed robaudit train -m cifar_resnet20 --weights "$W" -d "imagefolder:$CIFAR" --split train --limit "${LIMIT:-10000}" \
    --val-data "$TEST" --val-limit 500 --epochs "${EPOCHS:-3}" --lr 0.02 --warmup-epochs 0.2 --batch-size 128 \
    --seed 0 -o "$OUT/runs/$name" "$@"
}

audit() {  # NAME WEIGHTS
  local name=$1 weights=$2 dir=$OUT/audits/$1
  [ -f "$dir/done" ] && return
  mkdir -p "$dir"
  timed robaudit eval -m cifar_resnet20 --weights "$weights" -d "$TEST" -o "$dir" --overwrite
  timed robaudit hybrid -m cifar_resnet20 --weights "$weights" -d "$TEST" --limit "${N_HYBRID:-500}" -o "$dir" --overwrite
  timed robaudit attack -m cifar_resnet20 --weights "$weights" -d "$TEST" --limit "${N_MINIMAL:-200}" --minimal -a ddn:steps=50 \
    --threat white --no-checks --save-perturbations "$dir/minimal.npz" -o "$dir" --overwrite
  timed robaudit spectrum -p "$dir/minimal.npz" -o "$dir" --overwrite
  timed robaudit corruptions -m cifar_resnet20 --weights "$weights" -d "$TEST" --limit "${N_CORRUPT:-300}" --severities "${SEVERITIES:-1,3,5}" \
    --noise-levels 0.02,0.04,0.08,0.12,0.16 -o "$dir" --overwrite
  touch "$dir/done"
}

log "1. blur fine-tuning"
train plain-ft
train blur15 --defense blur:sigma=1.5
[ "${BLUR10:-1}" = 1 ] && train blur10 --defense blur:sigma=1.0
audit published "$W"
audit plain-ft "$OUT/runs/plain-ft/model.safetensors"
audit blur15 "$OUT/runs/blur15/model.safetensors"
[ "${BLUR10:-1}" = 1 ] && audit blur10 "$OUT/runs/blur10/model.safetensors"

log "2. similarity regularization (teacher: blur15's layer3)"
TEACHER="teacher=cifar_resnet20,teacher_weights=$OUT/runs/blur15/model.safetensors,layer=layer3,layers=layer3"
for variant in "a1:similarity:$TEACHER,weight=1" "a10:similarity:$TEACHER,weight=10" \
               "a10-shuffled:similarity:$TEACHER,weight=10,shuffle=true"; do
  name=${variant%%:*}
  LIMIT=${SIM_LIMIT:-5000} EPOCHS=${SIM_EPOCHS:-2} train "sim-$name" -r "${variant#*:}"
done
LIMIT=${SIM_LIMIT:-5000} EPOCHS=${SIM_EPOCHS:-2} train sim-a0
for name in a0 a1 a10 a10-shuffled; do
  dir=$OUT/similarity/$name
  [ -f "$dir/done" ] && continue
  mkdir -p "$dir"
  weights=$OUT/runs/sim-$name/model.safetensors
  timed robaudit rsa -m cifar_resnet20 --weights "$weights" -d "$TEST" --limit "${N_RSA:-300}" --layers layer3 \
    --target-model cifar_resnet20 --target-weights "$OUT/runs/blur15/model.safetensors" --target-layer layer3 \
    --bootstrap 200 -o "$dir" --overwrite
  timed robaudit corruptions -m cifar_resnet20 --weights "$weights" -d "$TEST" --limit "${N_RSA:-300}" -c gaussian_noise \
    --severities 3 --noise-levels 0.02,0.04,0.08,0.12,0.16 -o "$dir" --overwrite
  touch "$dir/done"
done
python3 "$(dirname "$0")/train_resnet20_table.py" "$OUT" | tee "$OUT/table.md"
