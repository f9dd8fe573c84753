#!/usr/bin/env bash
# make_persist_fixture.sh - writes tests/data/persist/vN/: a data dir in today's format
# (ND_PERSIST_FORMAT_VERSION = N) holding layers of every kind and convention, with optimizer
# state (sgd with momentum, adam) and a shared array, and what normd answers about it once
# loaded: every layer's information, an extract of every array and parameter, the shared array,
# the list, each layer's training history (version 3 on), and each layer's next train-step. tests/server/test_compat.sh loads the data dir with
# the binary under test and compares its answers byte for byte.
#
# Run it once per released format, and commit its output; never regenerate an old version's
# folder: it stands for data dirs users already have (the script refuses a folder git tracks,
# and a vK folder of another version than the binary's source).
#
#   tests/tools/make_persist_fixture.sh [OUT]    (NORMD=build/normd; OUT: tests/data/persist/vN)
set -eu
cd "$(dirname "$0")/../.."
NORMD=${NORMD:-build/normd}
V=$(sed -n 's/^#define ND_PERSIST_FORMAT_VERSION \([0-9][0-9]*\).*/\1/p' core/persist.h)
[ -n "$V" ] || { echo "no ND_PERSIST_FORMAT_VERSION in core/persist.h" >&2; exit 1; }
OUT=${1:-tests/data/persist/v$V}
case $(basename "$OUT") in
v[0-9]*) [ "$(basename "$OUT")" = "v$V" ] ||
    { echo "$OUT: this source writes format version $V" >&2; exit 1; } ;;
esac
if git ls-files --error-unmatch "$OUT" >/dev/null 2>&1; then
    echo "$OUT is committed: a released version's fixture is never regenerated" >&2
    exit 1
fi
. tests/server/lib.sh
J=(-H 'Content-Type: application/json')

# name | definition | per-example shape of its train-steps | optimizer
LAYERS='
bn_wolfram|{"type":"BatchNormalization","input":[3],"options":{"description":"bn_wolfram, stored by format 4 on: a description is kept"}}|[3]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
bn_keras|{"type":"BatchNormalization","convention":"keras","input":[4],"options":{"momentum":0.95}}|[4]|{"type":"adam","learning_rate":0.01}
bn_pytorch|{"type":"BatchNorm1D","convention":"pytorch","input":[3,5]}|[3,5]|{"type":"adam","learning_rate":0.01}
bn_pytorch_null|{"type":"BatchNormalization","convention":"pytorch","input":[3],"options":{"momentum":null}}|[3]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
bn_onnx|{"type":"BatchNorm2D","convention":"onnx","input":[2,3,2]}|[2,3,2]|{"type":"sgd","learning_rate":0.05,"momentum":0.9,"nesterov":true}
bn_puzzlelib|{"type":"BatchNormalization","convention":"puzzlelib","input":[3,2],"options":{"init_factor":0.8,"min_factor":0.2},"seed":7}|[3,2]|{"type":"adam","learning_rate":0.01}
bn_automatic|{"type":"BatchNormalization","input":[3,null]}|[3,4]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
normalization|{"type":"Normalization","input":[3,4,2],"options":{"aggregation_levels":"2;;All","scaling_levels":"Complement","unbiased":true}}|[3,4,2]|{"type":"adam","learning_rate":0.01}
layer_norm|{"type":"LayerNormalization","convention":"keras","input":[3,6],"options":{"axis":[-2,-1]}}|[3,6]|{"type":"adam","learning_rate":0.01}
instance_norm|{"type":"InstanceNormalization","convention":"pytorch","input":[3,4]}|[3,4]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
group_norm|{"type":"GroupNormalization","input":[4,3],"options":{"groups":2}}|[4,3]|{"type":"adam","learning_rate":0.01}
rms_norm|{"type":"RMSNormalization","convention":"pytorch","input":[6]}|[6]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
shared_a|{"type":"BatchNormalization","input":[3],"arrays":{"Scaling":{"shared":"gamma"}}}|[3]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
shared_b|{"type":"LayerNormalization","input":[3],"arrays":{"Scaling":{"shared":"gamma"}}}|[3]|{"type":"adam","learning_rate":0.01}
uninitialized|{"type":"BatchNormalization","convention":"keras"}|[3]|{"type":"sgd","learning_rate":0.1}
'
# Version 2 stores how a definition named things (API.md 1.1a): each framework's type names and
# PyTorch's arguments. An optimizer "-": never trained (no arrays to train, or no input yet).
LAYERS_V2='
torch_bn2d|{"type":"BatchNorm2d","options":{"num_features":3,"momentum":null}}|[3,2,2]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
torch_bn1d_nostats|{"type":"BatchNorm1d","input":[3,5],"options":{"num_features":3,"track_running_stats":false,"eps":0.001}}|[3,5]|{"type":"adam","learning_rate":0.01}
torch_layer_norm|{"type":"LayerNorm","input":[3,4],"options":{"normalized_shape":[4],"bias":false}}|[3,4]|{"type":"adam","learning_rate":0.01}
torch_group_norm|{"type":"GroupNorm","input":[4,3],"options":{"num_groups":2,"num_channels":4}}|[4,3]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
torch_group_norm_uninit|{"type":"GroupNorm","options":{"num_groups":3,"num_channels":6,"affine":false}}|[6]|-
torch_rms_norm|{"type":"RMSNorm","options":{"normalized_shape":[2,3],"eps":0.0001}}|[2,3]|{"type":"adam","learning_rate":0.01}
torch_instance_norm2d|{"type":"InstanceNorm2d","options":{"num_features":3,"affine":true}}|[3,2,2]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
torch_instance_norm2d_plain|{"type":"InstanceNorm2d","options":{"num_features":2}}|[2,2,3]|-
keras_bn_sync|{"type":"BatchNormalization","input":[3],"options":{"synchronized":true,"momentum":0.9}}|[3]|{"type":"adam","learning_rate":0.01}
wolfram_bn_layer|{"type":"BatchNormalizationLayer","input":[2]}|[2]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
puzzlelib_bn2d|{"type":"BatchNorm2D","input":[2,2,2]}|[2,2,2]|{"type":"adam","learning_rate":0.01}
'
[ "$V" -ge 2 ] && LAYERS="$LAYERS$LAYERS_V2"
# Version 3 also holds instance norms with running statistics (track_running_stats true), which
# earlier versions refused.
LAYERS_V3='
torch_instance_norm1d_running|{"type":"InstanceNorm1d","options":{"num_features":3,"track_running_stats":true,"momentum":0.2}}|[3,4]|{"type":"sgd","learning_rate":0.05,"momentum":0.9}
instance_norm_running|{"type":"InstanceNormalization","input":[2,3],"options":{"track_running_stats":true}}|[2,3]|{"type":"adam","learning_rate":0.01}
'
[ "$V" -ge 3 ] && LAYERS="$LAYERS$LAYERS_V3"

# body SHAPE OPTIMIZER K: a train-step body of a batch of 3, its numbers fixed by K
body() {
    python3 - "$@" <<'PY'
import json, sys
shape, opt, k = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
n = [0]
def t(s):
    if not s:
        n[0] += 1
        return round(((n[0] * 37 + k * 11) % 29) / 8.0 - 1.75, 3)
    return [t(s[1:]) for _ in range(s[0])]
print(json.dumps({"input": t([3] + shape), "output_gradient": t([3] + shape), "optimizer": opt}))
PY
}

# want NAME: fails unless the last request answered 2xx
want() {
    case $STATUS in 2*) ;; *) echo "$1: $STATUS $(cat "$BODY")" >&2; exit 1 ;; esac
}

DATA=$TMP/data
start_server --data-dir "$DATA"
while IFS='|' read -r name def shape opt; do
    [ -n "$name" ] || continue
    req PUT "/v1/layers/$name" "${J[@]}" -d "$def"
    want "define $name"
    [ "$name" = uninitialized ] || [ "$opt" = - ] && continue
    for k in 1 2; do
        req POST "/v1/layers/$name/train-step" "${J[@]}" -d "$(body "$shape" "$opt" "$k")"
        want "train-step $k of $name"
    done
done <<<"$LAYERS"
stop_server

rm -rf "$OUT"
mkdir -p "$OUT/expected"
cp -R "$DATA" "$OUT/data"
# What a server answers about the data dir just loaded, then each layer's next train-step.
start_server --data-dir "$DATA"
if grep -q '"msg":"skipping' "$LOG"; then cat "$LOG" >&2; exit 1; fi
req GET /v1/layers
want "the list"
cp "$BODY" "$OUT/expected/_layers.json"
req GET /v1/shared-arrays/gamma
want "the shared array"
cp "$BODY" "$OUT/expected/_shared-gamma.json"
while IFS='|' read -r name def shape opt; do
    [ -n "$name" ] || continue
    req GET "/v1/layers/$name"
    want "info of $name"
    cp "$BODY" "$OUT/expected/$name.info.json"
    keys=$(python3 -c 'import json,sys; i=json.load(open(sys.argv[1]))
a=[k for k in ("Scaling","Biases","MovingMean","MovingVariance") if isinstance((i.get("arrays") or {}).get(k),dict) and isinstance(i["arrays"][k].get("shape"),list)]
print(json.dumps({"keys": a + ["Epsilon","Momentum","Input","Output"]}))' "$BODY")
    echo "$keys" >"$OUT/expected/$name.extract-request.json"
    req POST "/v1/layers/$name/extract" "${J[@]}" -d "$keys"
    want "extract of $name"
    cp "$BODY" "$OUT/expected/$name.extract.json"
    if [ "$V" -ge 3 ]; then # version 3 stores the training history
        req GET "/v1/layers/$name/history"
        want "history of $name"
        cp "$BODY" "$OUT/expected/$name.history.json"
    fi
    [ "$name" = uninitialized ] || [ "$opt" = - ] ||
        body "$shape" "$opt" 3 >"$OUT/expected/$name.next-request.json"
done <<<"$LAYERS"
# in the order test_compat.sh sends them (shared_a's step changes what shared_b's sees)
for f in "$OUT"/expected/*.next-request.json; do
    name=$(basename "$f" .next-request.json)
    req POST "/v1/layers/$name/train-step" "${J[@]}" --data-binary @"$f"
    want "next train-step of $name"
    cp "$BODY" "$OUT/expected/$name.next.json"
done
stop_server
echo "wrote $OUT: $(ls "$OUT/data/layers" | wc -l) layers, $(ls "$OUT/data/shared" | wc -l) shared arrays"
