#!/usr/bin/env bash
# test_http.sh - the real binary on a loopback port, driven with curl: every route, every error
# status, binary bodies, auth, limits, configuration errors and the SIGTERM drain.
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh

J=(-H 'Content-Type: application/json')

# ---- configuration ----
"$NORMD" --port 0 >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q -- '--port' "$TMP/err" && ok || fail "--port 0 exits 2 naming the flag"
NORMD_THREADS=abc "$NORMD" >/dev/null 2>"$TMP/err"
[ $? = 2 ] && grep -q NORMD_THREADS "$TMP/err" && ok || fail "a bad NORMD_ variable exits 2"
"$NORMD" --no-such-flag >/dev/null 2>&1
[ $? = 2 ] && ok || fail "an unknown flag exits 2"
"$NORMD" --help | grep -q NORMD_API_KEY && ok || fail "--help lists the variables"

start_server --max-body-bytes 4096 --max-elements 1000 --max-layers 3

# A port another normd listens on: refused (with SO_REUSEPORT the second would share its
# connections), whatever the loops; the first keeps serving.
for loops in 2 1; do
    timeout 20 "$NORMD" --host 127.0.0.1 --port "$PORT" --http-threads "$loops" >/dev/null 2>"$TMP/err"
    [ $? = 1 ] && grep -q "in use" "$TMP/err" && ok || fail "a port in use, $loops loops: exit 1 saying so: $(cat "$TMP/err")"
done

# ---- health, readiness, info, metrics ----
req GET /healthz -H 'X-Request-Id: it-42'
expect_status 200 "healthz"
expect_body_has '"status":"ok"' "healthz body"
expect_header X-Request-Id it-42 "request id echoed"
req GET /healthz
ID1=$(grep -i '^X-Request-Id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
req GET /healthz
ID2=$(grep -i '^X-Request-Id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
[[ $ID1 =~ ^[0-9a-f]{8}-[0-9a-f]+-[0-9a-f]{6,}$ && $ID1 != "$ID2" ]] && ok ||
    fail "made request ids: time-loop-counter in hex, one per request ($ID1, $ID2)"
req GET /readyz
expect_status 200 "readyz"
req GET /v1
expect_body_has '"max_elements":1000' "v1 reports limits"
req GET /v1/types/GroupNormalization/options
expect_body_has '"groups":32' "options per type"
req GET /v1/types/Nope/options
expect_error 404 not_found "unknown type"

# ---- layer lifecycle ----
req POST /v1/layers "${J[@]}" -d '{"name":"bn","type":"BatchNormalization","input":[3]}'
expect_status 201 "create"
expect_header Location /v1/layers/bn "Location"
expect_header ETag '"' "ETag on create"
grep -iqE '^ETag: "[0-9]+"'$'\r''?$' "$HEADERS" && ok || fail "ETag is a quoted version number"
req POST /v1/layers "${J[@]}" -d '{"name":"bn","type":"BatchNormalization","input":[3]}'
expect_error 409 already_exists "create twice"
req GET /v1/layers
expect_body_has '"name":"bn"' "list"
req GET /v1/layers/bn
expect_body_has '"parameter_count":12' "info"
req PUT /v1/layers/bn "${J[@]}" -H 'If-Match: "99"' -d '{"type":"BatchNormalization","input":[3]}'
expect_error 412 precondition_failed "If-Match mismatch"
req PUT /v1/layers/bn "${J[@]}" -d '{"type":"BatchNormalization","input":[3],"options":{"foo":1}}'
expect_error 422 unknown_field "unknown option"
expect_body_has 'options.foo' "unknown option named"
req PUT /v1/layers/bn "${J[@]}" -d '{"type":"BatchNormalization","input":[3],"options":{"epsilon":"x"}}'
expect_error 400 invalid_type "wrong JSON type"
req PUT /v1/layers/bn "${J[@]}" -d '{"type":"BatchNormalization","input":[3],"options":{"epsilon":-1}}'
expect_error 422 invalid_value "bad value"
req PUT /v1/layers/bn "${J[@]}" -d '{"type":"BatchNormalization","input":[3'
expect_error 400 malformed_body "malformed JSON"
req PUT /v1/layers/bn -H 'Content-Type: text/plain' -d 'x'
expect_error 415 unsupported_media_type "media type"

# ---- forward, train-step, extract, arrays ----
req POST /v1/layers/bn/forward "${J[@]}" -d '{"input":[[1,2,3],[3,2,1]]}'
expect_status 200 "forward"
expect_body_has '"output":[[' "forward output"
req POST /v1/layers/bn/forward "${J[@]}" -d '{"input":[1,2,3,4]}'
expect_error 422 shape_mismatch "forward shape"
req GET /v1/layers/bn/forward
expect_error 405 method_not_allowed "wrong method"
expect_header Allow POST "Allow header"
req POST /v1/layers/bn/train-step "${J[@]}" -d '{"input":[[1,2,3],[3,2,1]],"output_gradient":[[1,0,0],[0,1,0]],"optimizer":{"type":"adam"},"return":["output","input_gradient","array_gradients","arrays","batch_statistics"]}'
expect_status 200 "train-step"
expect_body_has '"input_gradient"' "train-step items"
expect_body_has '"batch_statistics"' "train-step batch statistics"
req POST /v1/layers/bn/extract "${J[@]}" -d '{"keys":["MovingMean","Epsilon","Momentum"]}'
expect_body_has '"Epsilon":0.001' "extract"
req GET /v1/layers/bn/arrays/Scaling
expect_body_has '"name":"Scaling"' "get array"
req GET /v1/layers/bn/arrays/Nope
expect_error 404 not_found "unknown array"
req PUT /v1/layers/bn/arrays/Biases "${J[@]}" -d '{"array":[1,2,3]}'
expect_status 200 "put array"

# ---- binary bodies ----
printf '\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40' >"$TMP/bin" # 1, 2, 3 as FP32
req POST /v1/layers/bn/forward -H 'Content-Type: application/octet-stream' \
    -H 'X-Tensor-Shape: 1,3' --data-binary @"$TMP/bin"
expect_status 200 "binary forward"
expect_header Content-Type application/octet-stream "binary response type"
expect_header X-Tensor-Shape 1,3 "binary response shape"
[ "$(stat -c %s "$BODY")" = 12 ] && ok || fail "binary response size"
req POST /v1/layers/bn/forward -H 'Content-Type: application/octet-stream' \
    -H 'X-Tensor-Shape: 2,3' --data-binary @"$TMP/bin"
expect_error 422 shape_mismatch "binary byte count"
req GET /v1/layers/bn/arrays/Scaling -H 'Accept: application/octet-stream'
expect_header X-Tensor-Shape 3 "binary array"

# ---- limits ----
head -c 10000 /dev/zero | tr '\0' '1' >"$TMP/big"
req POST /v1/layers/bn/forward "${J[@]}" --data-binary @"$TMP/big"
expect_error 413 payload_too_large "body over the limit"
req GET /healthz
expect_status 200 "alive after 413"
python3 -c 'print("{\"input\": [" + ",".join(["0"] * 1500) + "]}")' >"$TMP/many"
req POST /v1/layers/bn/forward "${J[@]}" --data-binary @"$TMP/many"
expect_error 413 payload_too_large "tensor over max-elements"
head -c 10000 /dev/zero | tr '\0' a >"$TMP/pad"
req GET /healthz -H "X-Pad: $(cat "$TMP/pad")"
expect_status 200 "10 KB of request headers"
head -c 20000 /dev/zero | tr '\0' a >"$TMP/pad"
req GET /healthz -H "X-Pad: $(cat "$TMP/pad")"
expect_status 431 "request headers over 16 KiB"
req GET /healthz
expect_status 200 "alive after 431"
for n in l2 l3; do
    req PUT "/v1/layers/$n" "${J[@]}" -d '{"type":"LayerNormalization","input":[4]}'
done
req PUT /v1/layers/l4 "${J[@]}" -d '{"type":"LayerNormalization","input":[4]}'
expect_error 429 limit_exceeded "max-layers"

# ---- not found, shared arrays, delete ----
req GET /v1/no-such-route
expect_error 404 not_found "unknown route"
req GET /v1/shared-arrays/none
expect_error 404 not_found "unknown shared array"
req DELETE /v1/layers/bn
expect_status 204 "delete"
req DELETE /v1/layers/bn
expect_error 404 not_found "delete twice"
req POST /v1/layers/bn/forward "${J[@]}" -d '{"input":[1,2,3]}'
expect_error 404 not_found "forward on a deleted layer"

# ---- metrics and the access log ----
req GET /metrics
expect_body_has 'normd_http_requests_total{route="/v1/layers/{name}/forward",status="200"}' "metrics"
expect_body_has 'normd_http_request_duration_seconds_bucket' "latency histogram"
expect_body_has 'normd_layers 2' "layers gauge"
grep -q '"msg":"request","request_id":"it-42"' "$LOG" && ok || fail "access log line"

# ---- drain: an in-flight request completes, then exit 0 ----
req PUT /v1/layers/slow "${J[@]}" -d '{"type":"BatchNormalization","input":[3]}'
python3 -c 'print("{\"input\": [[" + ",".join(["0.5"] * 3) + "]]}" + " " * 3000)' >"$TMP/slow"
curl -s -o "$TMP/slow.out" -w '%{http_code}' --limit-rate 1k -H 'Content-Type: application/json' \
    --data-binary @"$TMP/slow" "$BASE/v1/layers/slow/forward" >"$TMP/slow.status" &
CURL=$!
# Counts, not sleeps: SIGTERM once the slow request is in flight (the gauge counts this
# /metrics request too), then the port refuses new connections (generous liveness bounds).
for _ in $(seq 1 400); do
    n=$(curl -s "$BASE/metrics" | sed -n 's/^normd_http_requests_in_flight //p')
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.05
done
kill -TERM "$PID"
refused=
for _ in $(seq 1 400); do
    curl -s -o /dev/null "$BASE/healthz" || { refused=1; break; }
    sleep 0.05
done
[ -n "$refused" ] && ok || fail "still accepting after SIGTERM"
wait "$CURL"
[ "$(cat "$TMP/slow.status")" = 200 ] && ok || fail "in-flight request during drain: $(cat "$TMP/slow.status")"
wait "$PID"
[ $? = 0 ] && ok || fail "exit status after drain"

# ---- auth ----
start_server --api-key s3cret
req GET /v1/layers
expect_error 401 unauthorized "no key"
req GET /v1/layers -H 'Authorization: Bearer wrong'
expect_error 401 unauthorized "wrong key"
req GET /v1/layers -H 'Authorization: Bearer s3cret'
expect_status 200 "right key"
req GET /healthz
expect_status 200 "healthz needs no key"
stop_server
[ "$EXIT" = 0 ] && ok || fail "exit status $EXIT"

summary "http"
