#!/usr/bin/env bash
# test_durability_log.sh - the --data-dir log (DIR/log/CURRENT.ndlog): after kill -9 the log
# alone brings back every acknowledged train-step, bit for bit; a torn record at its end (a
# crash mid-append) is dropped and the prefix loads; a damaged record in the middle stops the
# replay there, is logged and the log is kept aside; the log is compacted into the layer files
# once it passes 64 MiB, and a kill -9 after that reloads right; a data dir of files only (no
# log folder, as before the log) loads unchanged; a removal as the first change after a start
# survives the puts after it; a partial copy whose whole copy was lost after a removal loads
# alone, never over the removed layer's file; rounds of random changes, each ended by kill -9
# or a stop, lose no acknowledged change; a second normd on a data dir in use exits and costs
# the first nothing (a LOCK holding junk or a link is read safely or refused); a normd whose
# port is in use exits before it opens the data dir.
#
# Needs bash, curl and python3 (standard library).
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh

PY="$TMP/log.py"
cat >"$PY" <<'EOF'
# The HTTP side and the log surgery of test_durability_log.sh. Python standard library only.
import http.client, json, os, random, struct, sys, urllib.parse, zlib


def call(base, method, path, body=None):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")


def steps(base, name, n, width, out):
    """n train-steps (adam, output_gradient) on layer name; appends to out one JSON line per
    acknowledged step: its version and the arrays it answered."""
    with open(out, "a") as f:
        for k in range(n):
            rng = random.Random("%s/%d" % (name, k))
            x = [[round(rng.uniform(-2, 2), 3) for _ in range(width)] for _ in range(2)]
            g = [[round(rng.uniform(-1, 1), 3) for _ in range(width)] for _ in range(2)]
            st, b = call(base, "POST", "/v1/layers/%s/train-step" % name,
                         {"input": x, "output_gradient": g, "optimizer": {"type": "adam"},
                          "return": ["version", "arrays"]})
            if st != 200:
                sys.exit("train-step: %d %s" % (st, b))
            f.write(json.dumps({"version": b["version"], "arrays": b["arrays"]}) + "\n")


def check(base, name, acked, back):
    """The layer's version and arrays equal those of the acknowledged step `back` steps before
    the last one (0: the last), and its history holds a record of each step up to that one (the
    newest 256 of them): the log's partial copies rebuilt over the last whole one."""
    steps = [json.loads(l) for l in open(acked)][:len(open(acked).readlines()) - int(back)]
    want = steps[-1]
    st, info = call(base, "GET", "/v1/layers/" + name)
    if st != 200 or info["version"] != want["version"]:
        sys.exit("version %s, want %d" % (info.get("version") if st == 200 else st, want["version"]))
    for a, v in want["arrays"].items():
        st, got = call(base, "GET", "/v1/layers/%s/arrays/%s" % (name, a))
        if st != 200 or got["array"] != v:
            sys.exit("array %s differs from the acknowledged one" % a)
    st, h = call(base, "GET", "/v1/layers/%s/history" % name)
    versions = [r["version"] for r in h["records"]] if st == 200 else None
    if st != 200 or h["total"] != len(steps) or versions != [s["version"] for s in steps[-256:]]:
        sys.exit("history: %s records, total %s; want %d records of versions %d..%d" %
                 (len(versions or []), h.get("total"), min(len(steps), 256),
                  steps[-256:][0]["version"], want["version"]))


def records(path):
    """(offset, length) of each whole record of a log (header: NDLR, kind, op, u16 name length,
    u64 payload length, u32 CRC-32 of the name and payload, u32 CRC-32 of the 20 bytes before)."""
    data, off, out = open(path, "rb").read(), 0, []
    while off + 24 <= len(data) and data[off:off + 4] == b"NDLR":
        nlen, plen, body_crc, head_crc = struct.unpack_from("<HQII", data, off + 6)
        n = 24 + nlen + plen
        if (zlib.crc32(data[off:off + 20]) != head_crc or off + n > len(data) or
                zlib.crc32(data[off + 24:off + n]) != body_crc):
            break
        out.append((off, n))
        off += n
    return out


def tear(path):
    """Cuts the log in the middle of its last record (zeros ahead are cut too)."""
    off, n = records(path)[-1]
    os.truncate(path, off + n // 2)


def damage(path, index):
    """Flips a byte in the payload of record `index`."""
    off, n = records(path)[int(index)]
    with open(path, "r+b") as f:
        f.seek(off + n - 3)
        b = f.read(1)
        f.seek(off + n - 3)
        f.write(bytes([b[0] ^ 0x5a]))


def count(path):
    print(len(records(path)))


def drop(path, index):
    """Cuts record `index` out of the log, the records after it moved up (their CRCs cover
    their own bytes only, so they stay whole)."""
    data = open(path, "rb").read()
    off, n = records(path)[int(index)]
    with open(path, "wb") as f:
        f.write(data[:off] + data[off + n:])


def arrays(base, name):
    st, info = call(base, "GET", "/v1/layers/" + name)
    if st != 200:
        return None
    out = {"version": info["version"]}
    for a in ("Scaling", "Biases", "MovingMean", "MovingVariance"):
        out[a] = call(base, "GET", "/v1/layers/%s/arrays/%s" % (name, a))[1]["array"]
    return out


def churn(base, seed, n, model):
    """n random changes on layers c0..c2: a define when absent, else a train-step, or a removal
    three times in ten; each acknowledged change is put in the model (file: name -> the layer's
    version and arrays, or null when absent)."""
    rng = random.Random(seed)
    m = json.load(open(model)) if os.path.exists(model) else {}
    for _ in range(int(n)):
        name = "c%d" % rng.randrange(3)
        if m.get(name) is None:
            st, b = call(base, "PUT", "/v1/layers/" + name,
                         {"type": "BatchNormalization", "input": [rng.choice([4, 8])]})
        elif rng.random() < 0.3:
            st, b = call(base, "DELETE", "/v1/layers/" + name)
        else:
            w = len(arrays(base, name)["Scaling"])
            x = [[round(rng.uniform(-2, 2), 3) for _ in range(w)] for _ in range(2)]
            st, b = call(base, "POST", "/v1/layers/%s/train-step" % name,
                         {"input": x, "optimizer": {"type": "adam"},
                          "output_gradient": [[0.5] * w, [-0.25] * w]})
        if st not in (200, 201, 204):
            sys.exit("%s: %d %s" % (name, st, b))
        m[name] = arrays(base, name)
        json.dump(m, open(model, "w"))


def same(base, model):
    """Every layer of the model is back as it was acknowledged, or absent."""
    for name, want in json.load(open(model)).items():
        got = arrays(base, name)
        if got != want:
            sys.exit("%s: %s, want %s" % (name, got and got["version"], want and want["version"]))


def lock_hold(path, out):
    """Holds an flock on path as a normd would, its content hostile (digits, then an escape
    sequence and a newline); writes out once held and keeps it until killed."""
    import fcntl, time
    f = open(path, "w")
    f.write("12\x1b[31mjunk\n99")
    f.flush()
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    open(out, "w").close()
    time.sleep(600)


def hold(out):
    """Binds a loopback port without listening (a client's socket holds ports so), writes it to
    out and keeps it until killed."""
    import socket, time
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    with open(out + ".part", "w") as f:
        f.write(str(s.getsockname()[1]))
    os.rename(out + ".part", out)
    time.sleep(600)


cmd = sys.argv[1]
if cmd == "steps":
    steps(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
elif cmd == "check":
    check(*sys.argv[2:6])
else:
    globals()[cmd](*sys.argv[2:])
EOF

J=(-H 'Content-Type: application/json')
kill9() {
    kill -9 "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
}
define() { # name width
    req PUT "/v1/layers/$1" "${J[@]}" -d "{\"type\":\"BatchNormalization\",\"input\":[$2]}"
    expect_status 201 "define $1"
}

# The data dir a crash leaves: normd on dir, name defined of width, steps acknowledged
# train-steps (what each answered in $TMP/name.acked), then kill -9.
crash_after_steps() { # dir name width steps
    start_server --data-dir "$1"
    define "$2" "$3"
    python3 "$PY" steps "$BASE" "$2" "$4" "$3" "$TMP/$2.acked" && ok || fail "train-steps on $2"
    kill9
}

# ---- a. kill -9: the log alone holds every acknowledged step ----
A=$TMP/a
crash_after_steps "$A" la 8 12
[ ! -e "$A/layers/la.ndl" ] && ok || fail "no layer file before a compaction"
[ "$(python3 "$PY" count "$A/log/CURRENT.ndlog")" = 13 ] && ok || fail "13 records in the log: $(python3 "$PY" count "$A/log/CURRENT.ndlog")"
start_server --data-dir "$A"
python3 "$PY" check "$BASE" la "$TMP/la.acked" 0 && ok || fail "kill -9: the last acknowledged step is back"
grep -q '13 changes replayed' "$LOG" && ok || fail "13 changes replayed: $(grep replayed "$LOG")"
[ -f "$A/layers/la.ndl" ] && [ "$(python3 "$PY" count "$A/log/CURRENT.ndlog")" = 0 ] && ok ||
    fail "the start compacts the log"
[ "$(stat -c %s "$A/log/CURRENT.ndlog")" -ge 4096 ] && ok || fail "the start leaves removals their reserve"
python3 "$PY" steps "$BASE" la 3 8 "$TMP/la.acked" && ok || fail "train-steps after the restart"
kill9
start_server --data-dir "$A"
python3 "$PY" check "$BASE" la "$TMP/la.acked" 0 && ok || fail "files, then the log on top"
stop_server

# ---- b. a torn record at the end: dropped, the prefix loads ----
B=$TMP/b
crash_after_steps "$B" lb 8 6
python3 "$PY" tear "$B/log/CURRENT.ndlog"
start_server --data-dir "$B"
python3 "$PY" check "$BASE" lb "$TMP/lb.acked" 1 && ok || fail "a torn last record: the step before it"
grep -q 'dropping a torn record' "$LOG" && ok || fail "the torn record is logged"
req POST /v1/layers/lb/train-step "${J[@]}" -d '{"input":[[1,2,3,4,5,6,7,8],[8,7,6,5,4,3,2,1]]}'
expect_body_has '"version":7' "a step after the torn record continues from the prefix"
stop_server

# ---- c. a damaged record in the middle: replay stops there, logged, the log kept aside ----
C=$TMP/c
crash_after_steps "$C" lc 8 5
python3 "$PY" damage "$C/log/CURRENT.ndlog" 3 # the 3rd step: records 0 (define), 1 and 2 load
start_server --data-dir "$C"
python3 "$PY" check "$BASE" lc "$TMP/lc.acked" 3 && ok || fail "replay stops before the damaged record"
grep -q 'a damaged record at offset' "$LOG" && ok || fail "the damaged record is logged: $(grep -E 'torn|damaged|replayed' "$LOG")"
[ -s "$C/log/CURRENT.ndlog.damaged" ] && ok || fail "the damaged log is kept"
stop_server

# ---- d. compaction past 64 MiB, then kill -9 ----
D=$TMP/d
start_server --data-dir "$D"
define ld 8192 # an adam step stores ~200 KB: 64 MiB after ~330 steps
python3 "$PY" steps "$BASE" ld 400 8192 "$TMP/ld.acked" && ok || fail "train-steps on ld"
[ -f "$D/layers/ld.ndl" ] && ok || fail "compaction wrote the layer file"
N=$(python3 "$PY" count "$D/log/CURRENT.ndlog")
[ "$N" -gt 0 ] && [ "$N" -lt 330 ] && ok || fail "the log was emptied and refilled: $N records"
kill9
start_server --data-dir "$D"
python3 "$PY" check "$BASE" ld "$TMP/ld.acked" 0 && ok || fail "kill -9 after a compaction"
stop_server

# ---- e. a data dir of files only (before the log) loads unchanged ----
E=$TMP/e
start_server --data-dir "$E"
define le 8
req PUT /v1/layers/le2 "${J[@]}" -d '{"type":"BatchNormalization","input":[3],"arrays":{"Scaling":{"shared":"eg"}}}'
python3 "$PY" steps "$BASE" le 2 8 "$TMP/le.acked" && ok || fail "train-steps on le"
stop_server
rm -r "$E/log"
start_server --data-dir "$E"
python3 "$PY" check "$BASE" le "$TMP/le.acked" 0 && ok || fail "files only: the layer"
grep -q '"loaded 2 layers and 1 shared arrays from disk"' "$LOG" && ok || fail "files only: $(grep loaded "$LOG")"
[ -d "$E/log" ] && ok || fail "the log folder is made"
stop_server

# ---- f. a removal first after a start (a log with no zeros ahead), then steps, kill -9 ----
# The first put after it zeroed the log from where zeros had last been written, over the
# removal: the removed layer came back and the steps after it were lost.
F=$TMP/f
start_server --data-dir "$F"
define lf 8
define lf2 8
stop_server
start_server --data-dir "$F"
req DELETE /v1/layers/lf2
expect_status 204 "delete lf2"
python3 "$PY" steps "$BASE" lf 3 8 "$TMP/lf.acked" && ok || fail "train-steps on lf"
kill9
start_server --data-dir "$F"
req GET /v1/layers/lf2
expect_status 404 "kill -9: the removal is back"
python3 "$PY" check "$BASE" lf "$TMP/lf.acked" 0 && ok || fail "kill -9: the steps after the removal are back"
stop_server

# ---- g. a removal, then a partial copy: the file is the removed layer's, never its base ----
# normd writes a whole copy after a removal; the log is edited to lose it. The old file must
# not lend its history to the new layer's partial copies (merged_history would accept it: its
# total, 1, is within theirs).
G=$TMP/g
start_server --data-dir "$G"
define lg 8
python3 "$PY" steps "$BASE" lg 1 8 "$TMP/lg-old.acked" && ok || fail "a train-step on the first lg"
stop_server # compacts: lg.ndl holds the first lg
start_server --data-dir "$G"
req DELETE /v1/layers/lg
define lg 8
python3 "$PY" steps "$BASE" lg 2 8 "$TMP/lg.acked" && ok || fail "train-steps on the second lg"
req GET /v1/layers/lg/history
HISTORY=$(cat "$BODY")
kill9
python3 "$PY" drop "$G/log/CURRENT.ndlog" 1 # remove, (define), step, step
start_server --data-dir "$G"
grep -q 'layer lg: .*removed earlier in the log' "$LOG" && ok || fail "the missing base is logged: $(grep -E 'lg' "$LOG" | head -3)"
req GET /v1/layers/lg/history
[ "$(cat "$BODY")" = "$HISTORY" ] && ok || fail "the history is the second lg's only: $(head -c 400 "$BODY")"
python3 "$PY" check "$BASE" lg "$TMP/lg.acked" 0 && ok || fail "the second lg's last step is back"
stop_server

# ---- h. random defines, train-steps and removals; a kill -9 or a stop after each round ----
H=$TMP/h
for round in $(seq 1 10); do
    start_server --data-dir "$H"
    if [ "$round" -gt 1 ]; then
        python3 "$PY" same "$BASE" "$TMP/h.model" && ok || fail "round $round: every acknowledged change is back"
    fi
    python3 "$PY" churn "$BASE" "h$round" 8 "$TMP/h.model" && ok || fail "round $round: changes"
    if [ $((round % 3)) = 0 ]; then stop_server; else kill9; fi
done
start_server --data-dir "$H"
python3 "$PY" same "$BASE" "$TMP/h.model" && ok || fail "after the last round: every acknowledged change is back"
stop_server

# ---- i. one normd per data dir: a second one exits, and loses the first one nothing ----
# A second normd would replay and compact the log the first appends to, emptying it: the
# first one's later steps would then follow a hole of zeros, where replay stops.
I=$TMP/i
start_server --data-dir "$I"
define li 8
python3 "$PY" steps "$BASE" li 2 8 "$TMP/li.acked" && ok || fail "train-steps on li"
FIRST=$PID
[ "$(cat "$I/LOCK")" = "$FIRST" ] && ok || fail "LOCK holds the process id: $(cat "$I/LOCK")"
for _ in 1 2 3 4 5; do # another port, retried while it is in use (exit 1, before the data dir)
    timeout 60 "$NORMD" --host 127.0.0.1 --port "$(pick_port)" --data-dir "$I" \
        2>"$TMP/second.err"
    SECOND=$?
    [ "$SECOND" = 1 ] || break
done
[ "$SECOND" = 2 ] && grep -q "in use by another normd (process $FIRST" "$TMP/second.err" && ok ||
    fail "a second normd on the data dir exits 2 naming the first: $(cat "$TMP/second.err")"
python3 "$PY" steps "$BASE" li 1 8 "$TMP/li.acked" && ok || fail "a train-step after the second start"
kill9
start_server --data-dir "$I" # kill -9 let go of the lock
python3 "$PY" check "$BASE" li "$TMP/li.acked" 0 && ok || fail "the step after the second start is back"
stop_server

# The LOCK of a holder that wrote junk in it: the message names only its digits. A LOCK that
# is a symbolic link is refused (it could point anywhere the operator did not mean).
mkdir -p "$TMP/i2"
python3 "$PY" lock_hold "$TMP/i2/LOCK" "$TMP/i2.held" &
HOLDER=$!
PIDS+=("$HOLDER")
for _ in $(seq 1 400); do [ -e "$TMP/i2.held" ] && break; sleep 0.05; done
timeout 60 "$NORMD" --host 127.0.0.1 --port "$(pick_port)" --data-dir "$TMP/i2" 2>"$TMP/second.err"
[ $? = 2 ] && grep -q "in use by another normd (process 12, holding" "$TMP/second.err" &&
    ! grep -q "junk" "$TMP/second.err" && ok || fail "a junk LOCK's holder: $(cat -v "$TMP/second.err")"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null
mkdir -p "$TMP/i3"
ln -s "$TMP/i3-elsewhere" "$TMP/i3/LOCK"
timeout 60 "$NORMD" --host 127.0.0.1 --port "$(pick_port)" --data-dir "$TMP/i3" 2>"$TMP/second.err"
[ $? = 2 ] && grep -q "cannot open .*/LOCK" "$TMP/second.err" && [ ! -e "$TMP/i3-elsewhere" ] && ok ||
    fail "a LOCK that is a link: exit 2, nothing created where it points: $(cat "$TMP/second.err")"

# ---- j. a port in use: normd exits before it opens the data dir ----
# Loading a data dir (minutes for a large one) and compacting its log only to exit is waste, and
# a test's start retried on another port would find the log already compacted.
Jd=$TMP/j
crash_after_steps "$Jd" lj 8 2
cp "$Jd/log/CURRENT.ndlog" "$TMP/j.log"
start_server # a listener
timeout 60 "$NORMD" --host 127.0.0.1 --port "$PORT" --data-dir "$Jd" 2>"$TMP/busy.err"
[ $? = 1 ] && grep -q "in use" "$TMP/busy.err" && ok || fail "a port listened on: exit 1: $(cat "$TMP/busy.err")"
stop_server
python3 "$PY" hold "$TMP/held" &
HOLDER=$!
PIDS+=("$HOLDER")
for _ in $(seq 1 400); do [ -e "$TMP/held" ] && break; sleep 0.05; done
timeout 60 "$NORMD" --host 127.0.0.1 --port "$(cat "$TMP/held")" --data-dir "$Jd" 2>"$TMP/busy.err"
[ $? = 1 ] && grep -q "in use" "$TMP/busy.err" && ok || fail "a port bound: exit 1: $(cat "$TMP/busy.err")"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null
cmp -s "$Jd/log/CURRENT.ndlog" "$TMP/j.log" && [ -z "$(ls "$Jd/layers")" ] && ok ||
    fail "the data dir is untouched: log $(stat -c %s "$Jd/log/CURRENT.ndlog") bytes, layers: $(ls "$Jd/layers")"
start_server --data-dir "$Jd"
python3 "$PY" check "$BASE" lj "$TMP/lj.acked" 0 && ok || fail "lj loads after the refused starts"
stop_server

summary "durability log"
