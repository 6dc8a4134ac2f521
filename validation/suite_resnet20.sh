#!/usr/bin/env bash
# The CI story on the published CIFAR-10 ResNet-20: build and tune a key-value cache, run the suite
# (plain / cache / heavy blur) with its HTML report, then gate. Usage: validation/suite_resnet20.sh [OUT]
# Needs the validation data (ROBAUDIT_VALIDATION_DATA, default ../shared/data) and the cifar-resnets plugin.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${ROBAUDIT_VALIDATION_DATA:-$HERE/../../shared/data}"
OUT="${1:-resnet20-suite}"
WEIGHTS="$DATA/weights/cifar10_resnet20.th"
TEST="npz:$DATA/cifar10/test_exact_1017.npz"

robaudit cache build -m cifar_resnet20 --weights "$WEIGHTS" --layers penultimate \
    -d "npz:$DATA/cifar10/train_exact_5085.npz" --out "$OUT-cache" --overwrite
robaudit cache tune --cache "$OUT-cache" -d "$TEST" --indices 0:509 --thetas 1,3,10,30 --lams 0.5,0.7,0.9 \
    --overwrite --json > "$OUT-tune.json"
read -r THETA LAM < <(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); s=s.get('summary', s); print(s['best_theta'], s['best_lam'])" "$OUT-tune.json")
echo "tuned cache: theta=$THETA lam=$LAM"

robaudit run "$HERE/suite_resnet20.toml" -o "$OUT" --overwrite \
    --set "run.weights=$WEIGHTS" --set "run.data=$TEST" \
    --set "variants.cache.defense=cache:path=$OUT-cache,theta=$THETA,lam=$LAM"

# one page comparing the three variants (each variant folder also has its own report.html)
robaudit report html "$OUT"

status=0
echo "== gate: the cache model against its floors"
robaudit gate "$OUT/cache" --policy "$HERE/gate_resnet20.toml" || status=$?
echo "== gate: the weakened (heavy blur) model against the cache model as baseline (expected to fail: exit 1)"
set +e
robaudit gate "$OUT/blur" --policy "$HERE/gate_resnet20.toml" --baseline "$OUT/cache" --junit "$OUT/gate-blur.xml"
weakened=$?
set -e
echo "weakened model: gate exit $weakened"
[ "$weakened" = 1 ] || status=1
exit "$status"
