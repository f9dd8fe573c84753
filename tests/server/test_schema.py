#!/usr/bin/env python3
"""test_schema.py - every route of the real binary against api/openapi.yaml.

Starts normd (NORMD, loopback, free ports, stopped by pid), makes a real request to every route,
provokes the error statuses openapi.yaml declares for it where a client can reach them (400,
401 with --api-key, 404, 405, 409, 412, 413, 415, 422, 429 with --max-layers), and checks each
answer against the document:

- its status must be declared for that route (method and path) in openapi.yaml;
- its JSON body must match the response's schema (a small validator of the JSON Schema subset
  the file uses: $ref, type, nullable, properties, required, additionalProperties, items,
  enum, oneOf/anyOf/allOf/not, minimum/maximum with the OpenAPI 3.0 boolean exclusive forms,
  minItems/maxItems, pattern; format is ignored);
- the response's documented headers must match their schemas, and those marked
  `required: true` must be present.

The cases are a table (CASES), in execution order: a case names its server, request and
expected status, and may add its own check of the answer's headers and body (the values
docs/API.md states: Allow lists, CORS headers, type_given, the binary export's framing...).
With -v, statuses a route declares that no case provoked are listed at the end (information:
500, 503 and 507 cannot be provoked from outside).

  NORMD=build/normd python3 tests/server/test_schema.py [-v]

Standard library and python3-yaml. Prints "schema: N passed, M failed".
"""
import gzip
import http.client
import json
import os
import re
import sys
import zlib

import yaml

import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OPENAPI = os.path.join(HERE, "..", "..", "api", "openapi.yaml")
LIVENESS = 30.0  # seconds a request may take before the test gives up (liveness, not speed)
VERBOSE = "-v" in sys.argv[1:]
API_KEY = "schema-test-key"
CORS_ORIGIN = "http://app.example"
MAX_BODY = 65536


def ok(what):
    check(True, what)
    if VERBOSE:
        print("ok   " + what)


def fail(what):
    check(False, what)


# ---- a validator for the JSON Schema subset of OpenAPI 3.0 that api/openapi.yaml uses ----


class Validator:
    """Validates instances against schemas of one OpenAPI document (local $refs only)."""

    def __init__(self, doc):
        self.doc = doc

    def resolve(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError("only local $refs are supported: " + ref)
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            seen += 1
            if seen > 64:
                raise ValueError("$ref loop at " + ref)
        return node

    @staticmethod
    def type_ok(value, t):
        if t == "object":
            return isinstance(value, dict)
        if t == "array":
            return isinstance(value, list)
        if t == "string":
            return isinstance(value, str)
        if t == "boolean":
            return isinstance(value, bool)
        if t == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if t == "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if t == "null":
            return value is None
        raise ValueError("unknown type " + repr(t))

    def errors(self, value, schema, where="$"):
        """The list of problems of value against schema (empty: valid)."""
        schema = self.resolve(schema)
        if schema is True or schema == {}:
            return []
        if schema is False:
            return ["%s: nothing is allowed here" % where]
        errs = []
        if value is None:
            if schema.get("nullable"):
                return []
            if "type" in schema:
                return ["%s: null is not allowed (type %s, not nullable)" % (where, schema["type"])]
        if "type" in schema and value is not None and not self.type_ok(value, schema["type"]):
            return ["%s: %s is not of type %s" % (where, short(value), schema["type"])]
        if "enum" in schema and not in_enum(value, schema["enum"]):
            errs.append("%s: %s is not one of %s" % (where, short(value), schema["enum"]))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema:
                lo = schema["minimum"]
                if value < lo or (schema.get("exclusiveMinimum") is True and value == lo):
                    errs.append("%s: %s is below the minimum %s" % (where, value, lo))
            if "maximum" in schema:
                hi = schema["maximum"]
                if value > hi or (schema.get("exclusiveMaximum") is True and value == hi):
                    errs.append("%s: %s is above the maximum %s" % (where, value, hi))
        if isinstance(value, str):
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errs.append("%s: %s does not match %s" % (where, short(value), schema["pattern"]))
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                errs.append("%s: longer than %d" % (where, schema["maxLength"]))
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                errs.append("%s: fewer than %d items" % (where, schema["minItems"]))
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errs.append("%s: more than %d items" % (where, schema["maxItems"]))
            if "items" in schema:
                for i, item in enumerate(value):
                    errs += self.errors(item, schema["items"], "%s[%d]" % (where, i))
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for name in schema.get("required", []):
                if name not in value:
                    errs.append("%s: required property %s is missing" % (where, name))
            extra = schema.get("additionalProperties", True)
            for name, v in value.items():
                if name in props:
                    if self.resolve(props[name]).get("writeOnly"):
                        errs.append("%s.%s: writeOnly, yet in a response" % (where, name))
                    errs += self.errors(v, props[name], "%s.%s" % (where, name))
                elif extra is False:
                    errs.append("%s: property %s is not allowed" % (where, name))
                elif isinstance(extra, dict):
                    errs += self.errors(v, extra, "%s.%s" % (where, name))
        for sub in schema.get("allOf", []):
            errs += self.errors(value, sub, where)
        if "anyOf" in schema:
            if not any(not self.errors(value, s, where) for s in schema["anyOf"]):
                errs.append("%s: %s matches none of anyOf" % (where, short(value)))
        if "oneOf" in schema:
            results = [self.errors(value, s, where) for s in schema["oneOf"]]
            n = sum(1 for r in results if not r)
            if n != 1:
                detail = "" if n else ": " + "; ".join(min(results, key=len)[:2])
                errs.append("%s: %s matches %d of oneOf%s" % (where, short(value), n, detail))
        if "not" in schema and not self.errors(value, schema["not"], where):
            errs.append("%s: %s matches what `not` excludes" % (where, short(value)))
        return errs


def in_enum(value, enum):
    """Membership where True is not 1 (Python's == says it is)."""
    return any(e == value and isinstance(e, bool) == isinstance(value, bool) for e in enum)


def short(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- the document ----


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.v = Validator(self.doc)
        self.paths = []  # (template, regex, path item)
        for template, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "/?$"
            self.paths.append((template, re.compile(rx), item))

    def path_item(self, path):
        for template, rx, item in self.paths:
            if rx.match(path):
                return template, item
        return None, None

    def operation(self, method, path):
        """(template, operation or None) for a request; HEAD falls back to the GET operation."""
        template, item = self.path_item(path)
        if item is None:
            return None, None
        m = method.lower()
        if m not in item and m == "head":
            m = "get"
        return template, item.get(m)

    def response(self, op, status):
        responses = op.get("responses", {})
        for key in (str(status), "%dXX" % (status // 100), "default"):
            if key in responses:
                return key, self.v.resolve(responses[key])
        return None, None


# ---- the server ----


class Server(harness.Server):
    """harness.Server with one engine thread and one HTTP thread."""

    def __init__(self, *flags):
        super().__init__("--threads", "1", "--http-threads", "1", *flags)


def send(port, method, path, body=None, headers=None):
    """One request on its own connection: (status, headers lower-cased, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LIVENESS)
    try:
        hs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in hs.items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        heads = {}
        for k, v in resp.getheaders():
            k = k.lower()
            heads[k] = heads[k] + ", " + v if k in heads else v
        return resp.status, heads, data
    finally:
        conn.close()


# ---- checking one answer ----

COVERED = {}  # (METHOD, template) -> statuses seen


def check_answer(spec, case, status, heads, body):
    """Checks status, headers and body of one answer against openapi.yaml; True when valid."""
    name = case["id"]
    method, path = case["method"], case["path"].split("?")[0]
    template, op = spec.operation(method, path)
    if template is None and status == 404:
        # no such path: the 404 every route answers for a path it does not know
        op = {"responses": {"404": spec.doc["components"]["responses"]["NotFound"]}}
    elif template is None:
        fail("%s: %s is no path of openapi.yaml" % (name, path))
        return False
    elif op is None:
        # a method the path does not have: the path's 405, described by its operations
        item = spec.path_item(path)[1]
        for m, o in item.items():
            if m in ("get", "post", "put", "delete"):
                COVERED.setdefault((m.upper(), template), set()).add(status)
        op = next(v for k, v in item.items() if k in ("get", "post", "put", "delete"))
    key, resp = spec.response(op, status)
    COVERED.setdefault((method if method != "HEAD" else "GET", template), set()).add(status)
    if resp is None:
        fail("%s: %s %s answered %d, which openapi.yaml does not declare for it (%s)"
             % (name, method, template, status, body[:200]))
        return False
    good = True
    for hname, hdecl in (resp.get("headers") or {}).items():
        hdecl = spec.v.resolve(hdecl)
        value = heads.get(hname.lower())
        if value is None:
            if hdecl.get("required"):
                fail("%s: header %s is required on %s and missing" % (name, hname, key))
                good = False
            continue
        schema = hdecl.get("schema", {})
        if spec.v.resolve(schema).get("type") == "integer" and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
        errs = spec.v.errors(value, schema, hname)
        if errs:
            fail("%s: header %s: %s" % (name, hname, "; ".join(errs)))
            good = False
    content = resp.get("content") or {}
    if method == "HEAD" or status in (204, 304):
        if body:
            fail("%s: a %s answer with a body (%d bytes)" % (name, method, len(body)))
            return False
        return good
    if not content:
        if body:
            fail("%s: %d has a body but openapi.yaml declares none" % (name, status))
            return False
        return good
    ctype = heads.get("content-type", "").split(";")[0].strip().lower()
    media = None
    for mt, m in content.items():
        if mt.split(";")[0].strip().lower() == ctype:
            media = m
    if media is None:
        fail("%s: Content-Type %r is not declared for %s (%s)" % (name, ctype, key, list(content)))
        return False
    if heads.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    if ctype == "application/json":
        try:
            value = json.loads(body)
        except ValueError as e:
            fail("%s: the body is not JSON: %s" % (name, e))
            return False
        errs = spec.v.errors(value, media.get("schema", {}))
        if errs:
            fail("%s: the %d body does not match its schema: %s (body %s)"
                 % (name, status, "; ".join(errs[:4]), short(value)))
            return False
        case["json"] = value
    return good


# ---- the cases ----

BN = {"type": "BatchNormalization", "input": [3], "arrays": {"MovingVariance": [1, 4, 9]}}
LN_SHARED = {"type": "LayerNormalization", "input": [4], "arrays": {"Scaling": {"shared": "g1"}}}
UNINIT = {"type": "BatchNorm2D"}
INPLACE = {"type": "BatchNormalization", "convention": "puzzlelib", "input": [3],
           "options": {"inplace": True}}
X = [[1, 2, 3], [3, 2, 1]]
BIG_JSON = "x" * (MAX_BODY + 1024)
T2D = {"type": "BatchNorm2d", "options": {"num_features": 3}, "input": [3, 2, 2]}
T2D_ARGUMENTS = {"num_features": 3, "eps": 1e-05, "momentum": 0.1, "affine": True,
                 "track_running_stats": True}
ARRAYS_BN = ["Scaling", "Biases", "MovingMean", "MovingVariance"]
EXPORTS = {}  # export documents taken by the cases, for the import cases
BIG_INPUT = {"input": [[float(i % 7) for i in range(3)] for _ in range(800)]}  # a 20 KB+ reply


def gz(obj):
    return gzip.compress(obj if isinstance(obj, bytes) else json.dumps(obj).encode())


def raw_deflated(obj):
    c = zlib.compressobj(wbits=-15)
    return c.compress(json.dumps(obj).encode()) + c.flush()


def J(body):
    """The JSON of an answer's body."""
    return json.loads(body)


def edited(document, path, value):
    """An export document (bytes) with the field at path set to value."""
    doc = json.loads(document)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(doc).encode()


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def ndx1_ok(data):
    """A binary export as docs/API.md 2.5 frames it: "NDX1", u32 version 1, u64 payload length,
    the payload (u32 count of 1..3, then (u64 length, bytes) items, the first an NDL1 file),
    and the FNV-1a-64 of every byte before it."""
    import struct
    if len(data) < 32 or data[:4] != b"NDX1":
        return False
    version, length = struct.unpack_from("<IQ", data, 4)
    if version != 1 or 16 + length + 8 != len(data):
        return False
    (count,) = struct.unpack_from("<I", data, 16)
    (first,) = struct.unpack_from("<Q", data, 20)
    (digest,) = struct.unpack_from("<Q", data, len(data) - 8)
    return 1 <= count <= 3 and data[28:32] == b"NDL1" and first > 0 and \
        digest == fnv1a64(data[:-8])


def deflated(obj):
    return zlib.compress(json.dumps(obj).encode())


def f32(values):
    import struct
    return struct.pack("<%df" % len(values), *values)


def C(id, method, path, status, server="main", body=None, headers=None, check=None):
    """One case. body may be a function of the exports taken so far (import cases); check, a
    function of (headers, body bytes) that must answer True."""
    return {"id": id, "method": method, "path": path, "status": status, "server": server,
            "body": body, "headers": headers or {}, "check": check}


JSON = {"Content-Type": "application/json"}
OIP_BINARY = (b'{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32",'
              b'"parameters":{"binary_data_size":12}}],"parameters":{"binary_data_output":true}}')
CASES = [
    # -- health, metrics, server --
    C("healthz", "GET", "/healthz", 200),
    C("healthz body", "GET", "/healthz", 400, body={"a": 1}),
    C("healthz 405", "POST", "/healthz", 405, body={}),
    C("readyz", "GET", "/readyz", 200),
    C("readyz 405", "DELETE", "/readyz", 405),
    C("metrics", "GET", "/metrics", 200),
    C("metrics body", "GET", "/metrics", 400, body="x"),
    C("info", "GET", "/v1", 200),
    C("info 405", "PUT", "/v1", 405, body={}),
    C("types", "GET", "/v1/types", 200),
    C("types body", "GET", "/v1/types", 400, body={}),
    C("type options", "GET", "/v1/types/BatchNorm2D/options", 200),
    C("type options 404", "GET", "/v1/types/NoSuchNorm/options", 404),
    C("type options 405", "POST", "/v1/types/LayerNormalization/options", 405, body={}),
    # -- layers --
    C("list empty", "GET", "/v1/layers", 200),
    C("create bn", "POST", "/v1/layers", 201, body=dict(BN, name="bn")),
    C("create dup", "POST", "/v1/layers", 409, body=dict(BN, name="bn")),
    C("create if-match", "POST", "/v1/layers", 412, body=dict(BN, name="bn9"),
      headers={"If-Match": '"1"'}),
    C("create unknown field", "POST", "/v1/layers", 422, body=dict(BN, name="bn9", colour=1)),
    C("create bad type", "POST", "/v1/layers", 400,
      body={"name": "bn9", "type": "BatchNormalization", "options": {"epsilon": "small"}}),
    C("create malformed", "POST", "/v1/layers", 400, body='{"name": '),
    C("create text/plain", "POST", "/v1/layers", 415, body=json.dumps(BN),
      headers={"Content-Type": "text/plain"}),
    C("create too large", "POST", "/v1/layers", 413, body=BIG_JSON, headers=JSON),
    C("create 405", "PATCH", "/v1/layers", 405, body={}),
    C("put shared", "PUT", "/v1/layers/ln", 201, body=LN_SHARED),
    C("put uninit", "PUT", "/v1/layers/un", 201, body=UNINIT),
    C("put inplace", "PUT", "/v1/layers/pz", 201, body=INPLACE),
    C("put replace", "PUT", "/v1/layers/pz", 200, body=INPLACE),
    C("put if-match", "PUT", "/v1/layers/pz", 412, body=INPLACE, headers={"If-Match": '"99"'}),
    C("put name mismatch", "PUT", "/v1/layers/pz", 422, body=dict(INPLACE, name="other")),
    C("put malformed", "PUT", "/v1/layers/pz", 400, body="[1,"),
    C("put text/plain", "PUT", "/v1/layers/pz", 415, body="{}",
      headers={"Content-Type": "text/plain"}),
    C("put too large", "PUT", "/v1/layers/pz", 413, body=BIG_JSON, headers=JSON),
    C("put pytorch", "PUT", "/v1/layers/t2d", 201, body=T2D,
      check=lambda h, b: J(b)["type"] == "BatchNormalization" and
      J(b)["type_given"] == "BatchNorm2d" and J(b)["convention"] == "pytorch" and
      J(b)["convention_from"] == "type" and J(b)["arguments"] == T2D_ARGUMENTS),
    C("get pytorch", "GET", "/v1/layers/t2d", 200,
      check=lambda h, b: J(b)["type_given"] == "BatchNorm2d" and
      J(b)["arguments"] == T2D_ARGUMENTS and "eps" not in J(b)["options"] and
      J(b)["options"]["epsilon"] == 1e-05 and J(b)["options"]["track_running_stats"] is True),
    C("put pytorch canonical option", "PUT", "/v1/layers/t2d_bad", 422,
      body={"type": "BatchNorm2d", "options": {"num_features": 3, "epsilon": 0.1}},
      check=lambda h, b: J(b)["error"]["code"] == "unknown_field" and
      "num_features, eps, momentum" in J(b)["error"]["message"]),
    C("put layernorm", "PUT", "/v1/layers/ln_nobias", 201,
      body={"type": "LayerNorm", "options": {"normalized_shape": [4], "bias": False}},
      check=lambda h, b: J(b)["arguments"] == {"normalized_shape": [4], "eps": 1e-05,
                                               "elementwise_affine": True, "bias": False} and
      J(b)["arrays"]["Biases"] is None),
    C("put keras", "PUT", "/v1/layers/ks", 201,
      body={"type": "BatchNormalization", "input": [3], "options": {"synchronized": True}},
      check=lambda h, b: J(b)["convention"] == "keras" and J(b)["convention_from"] == "type" and
      "type_given" not in J(b) and "arguments" not in J(b) and
      J(b)["options"]["synchronized"] is True and len(J(b)["notes"]) == 1),
    C("put convention given", "PUT", "/v1/layers/kr", 201,
      body={"type": "BatchNormalizationLayer", "convention": "onnx", "input": [3]},
      check=lambda h, b: J(b)["convention_from"] == "request" and
      J(b)["type_given"] == "BatchNormalizationLayer"),
    C("list", "GET", "/v1/layers", 200),
    C("list bad query", "GET", "/v1/layers?verbose=1", 422),
    C("get", "GET", "/v1/layers/bn", 200,
      check=lambda h, b: J(b)["convention_from"] == "default" and "type_given" not in J(b)),
    C("get preset", "GET", "/v1/layers/ln", 200),
    C("get uninit", "GET", "/v1/layers/un", 200),
    C("get 404", "GET", "/v1/layers/nope", 404),
    C("get body", "GET", "/v1/layers/bn", 400, body={}),
    C("layer 405", "POST", "/v1/layers/bn", 405, body={}),
    # -- initialize --
    C("initialize no input", "POST", "/v1/layers/un/initialize", 409, body={}),
    C("initialize bad", "POST", "/v1/layers/un/initialize", 422, body={"input": [0, 2, 2]}),
    C("initialize type", "POST", "/v1/layers/un/initialize", 400, body={"input": "big"}),
    C("initialize 404", "POST", "/v1/layers/nope/initialize", 404, body={}),
    C("initialize 415", "POST", "/v1/layers/un/initialize", 415, body="{}",
      headers={"Content-Type": "text/csv"}),
    C("initialize 413", "POST", "/v1/layers/un/initialize", 413, body=BIG_JSON, headers=JSON),
    C("initialize empty", "POST", "/v1/layers/bn/initialize", 200),
    # -- forward --
    C("forward", "POST", "/v1/layers/bn/forward", 200, body={"input": X}),
    C("forward inputs", "POST", "/v1/layers/bn/forward", 200,
      body={"inputs": X, "mode": "inference", "output_format": "flat"}),
    C("forward binary", "POST", "/v1/layers/bn/forward?mode=train", 200, body=f32([1, 2, 3, 3, 2, 1]),
      headers={"Content-Type": "application/octet-stream", "X-Tensor-Shape": "2,3"}),
    C("forward binary no shape", "POST", "/v1/layers/bn/forward", 400, body=f32([1, 2, 3]),
      headers={"Content-Type": "application/octet-stream"}),
    C("forward shape", "POST", "/v1/layers/bn/forward", 422, body={"input": [[1, 2]]}),
    C("forward unknown query", "POST", "/v1/layers/bn/forward?colour=red", 422, body={"input": X}),
    C("forward uninit", "POST", "/v1/layers/un/forward", 409, body={"input": [[[[1]]]]}),
    C("forward 404", "POST", "/v1/layers/nope/forward", 404, body={"input": X}),
    C("forward 415", "POST", "/v1/layers/bn/forward", 415, body="1,2,3",
      headers={"Content-Type": "text/csv"}),
    C("forward 413", "POST", "/v1/layers/bn/forward", 413, body=BIG_JSON, headers=JSON),
    C("forward 405", "GET", "/v1/layers/bn/forward", 405),
    # -- train-step --
    C("train-step", "POST", "/v1/layers/bn/train-step", 200,
      body={"input": X, "output_gradient": [[1, 0, 0], [0, 1, 0]],
            "return": ["output", "input_gradient", "array_gradients", "arrays",
                       "batch_statistics"]}),
    C("train-step target", "POST", "/v1/layers/ln/train-step", 200,
      body={"input": [[1, 2, 3, 4]], "target": [[0, 0, 0, 0]], "optimizer": {"type": "adam"},
            "return": ["output", "loss"]}),
    C("train-step inplace", "POST", "/v1/layers/pz/train-step", 409, body={"input": X}),
    C("train-step uninit", "POST", "/v1/layers/un/train-step", 409, body={"input": [[[[1]]]]}),
    C("train-step bad", "POST", "/v1/layers/bn/train-step", 422,
      body={"input": X, "optimizer": {"type": "rmsprop"}}),
    C("train-step type", "POST", "/v1/layers/bn/train-step", 400, body={"input": X, "return": 3}),
    C("train-step return item", "POST", "/v1/layers/bn/train-step", 422,
      body={"input": X, "return": ["outputs"]},  # the list comes from the table: all 7 items
      check=lambda h, b: J(b)["error"]["field"] == "return" and all(
          '"%s"' % i in J(b)["error"]["message"] for i in
          ("output", "input_gradient", "array_gradients", "arrays", "batch_statistics", "loss",
           "version"))),
    C("train-step 404", "POST", "/v1/layers/nope/train-step", 404, body={"input": X}),
    C("train-step binary", "POST", "/v1/layers/bn/train-step", 415, body=f32([1, 2, 3]),
      headers={"Content-Type": "application/octet-stream", "X-Tensor-Shape": "1,3"}),
    C("train-step 413", "POST", "/v1/layers/bn/train-step", 413, body=BIG_JSON, headers=JSON),
    # -- extract --
    C("extract", "POST", "/v1/layers/bn/extract", 200,
      body={"keys": ["Scaling", "MovingMean", "Epsilon", "Momentum", "Input", "momentum"]}),
    C("extract All", "POST", "/v1/layers/bn/extract", 200, body={"keys": "All"},
      check=lambda h, b: list(J(b))[:8] == ["Epsilon", "Momentum", "Input", "Output"] + ARRAYS_BN
      and J(b)["epsilon"] == 0.001 and J(b)["Input"] == [3] and "etag" in h),
    C("extract All uninit", "POST", "/v1/layers/un/extract", 200,
      body={"keys": "All"}, check=lambda h, b: J(b)["Scaling"] is None and J(b)["Input"] is None),
    C("extract All disabled", "POST", "/v1/layers/ln_nobias/extract?output_format=flat", 200,
      body={"keys": "All"}, check=lambda h, b: J(b)["Biases"] is None and
      "Momentum" not in J(b) and J(b)["Scaling"] == {"shape": [4], "data": [1, 1, 1, 1]}),
    C("extract keys string", "POST", "/v1/layers/bn/extract", 400, body={"keys": "Scaling"}),
    C("extract format twice", "POST", "/v1/layers/bn/extract?output_format=flat", 422,
      body={"keys": ["Scaling"], "output_format": "b64"},
      check=lambda h, b: J(b)["error"]["field"] == "output_format"),
    C("extract missing array", "POST", "/v1/layers/ln/extract", 404, body={"keys": ["MovingMean"]}),
    C("extract uninit", "POST", "/v1/layers/un/extract", 409, body={"keys": ["Scaling"]}),
    C("extract bad key", "POST", "/v1/layers/bn/extract", 422, body={"keys": ["Colour"]}),
    C("extract keys type", "POST", "/v1/layers/bn/extract", 400, body={"keys": 5}),
    C("extract 415", "POST", "/v1/layers/bn/extract", 415, body="{}",
      headers={"Content-Type": "application/xml"}),
    C("extract 413", "POST", "/v1/layers/bn/extract", 413, body=BIG_JSON, headers=JSON),
    C("extract 404", "POST", "/v1/layers/nope/extract", 404, body={"keys": ["Scaling"]}),
    # -- arrays --
    C("array", "GET", "/v1/layers/bn/arrays/MovingVariance", 200),
    C("array b64", "GET", "/v1/layers/bn/arrays/gamma?output_format=b64", 200),
    C("array binary", "GET", "/v1/layers/bn/arrays/Scaling", 200,
      headers={"Accept": "application/octet-stream"}),
    C("array 404", "GET", "/v1/layers/ln/arrays/MovingMean", 404),
    C("array uninit", "GET", "/v1/layers/un/arrays/Scaling", 409),
    C("array bad format", "GET", "/v1/layers/bn/arrays/Scaling?output_format=csv", 422),
    C("array put", "PUT", "/v1/layers/bn/arrays/Biases", 200, body={"array": [0, 0.5, 1]}),
    C("array put binary", "PUT", "/v1/layers/bn/arrays/Scaling", 200, body=f32([1, 1, 2]),
      headers={"Content-Type": "application/octet-stream", "X-Tensor-Shape": "3"}),
    C("array put shape", "PUT", "/v1/layers/bn/arrays/Biases", 422, body={"array": [0, 1]}),
    C("array put type", "PUT", "/v1/layers/bn/arrays/Biases", 400, body={"array": "zeros"}),
    C("array put if-match", "PUT", "/v1/layers/bn/arrays/Biases", 412, body={"array": [0, 0, 0]},
      headers={"If-Match": '"1"'}),
    C("array put uninit", "PUT", "/v1/layers/un/arrays/Scaling", 409, body={"array": [1]}),
    C("array put 404", "PUT", "/v1/layers/bn/arrays/Nothing", 404, body={"array": [1]}),
    C("array put 415", "PUT", "/v1/layers/bn/arrays/Biases", 415, body="0,0,0",
      headers={"Content-Type": "text/csv"}),
    C("array put 413", "PUT", "/v1/layers/bn/arrays/Biases", 413, body=BIG_JSON, headers=JSON),
    C("array 405", "DELETE", "/v1/layers/bn/arrays/Biases", 405),
    # -- the arrays list, export and import --
    C("arrays list", "GET", "/v1/layers/bn/arrays", 200,
      check=lambda h, b: [a["name"] for a in J(b)["arrays"]] == ARRAYS_BN and
      all(a["shape"] == [3] and a["enabled"] for a in J(b)["arrays"]) and "etag" in h),
    C("arrays list disabled", "GET", "/v1/layers/ln_nobias/arrays", 200,
      check=lambda h, b: J(b)["arrays"][1] == {"name": "Biases", "shape": None,
                                               "learning_rate_multiplier": 1, "shared": None,
                                               "enabled": False}),
    C("arrays list query", "GET", "/v1/layers/bn/arrays?output_format=flat", 422,
      check=lambda h, b: J(b)["error"]["field"] == "output_format"),
    C("arrays list 404", "GET", "/v1/layers/nope/arrays", 404),
    C("export", "GET", "/v1/layers/bn/export", 200,
      check=lambda h, b: J(b)["format"] == "normd-layer" and J(b)["format_version"] == 1 and
      isinstance(J(b)["arrays"]["Scaling"]["values"], dict) and  # flat by default
      J(b)["definition"]["type"] == "BatchNormalization" and "etag" in h),
    C("export b64", "GET", "/v1/layers/bn/export?output_format=b64", 200,
      check=lambda h, b: "b64" in J(b)["arrays"]["MovingVariance"]["values"]),
    C("export pytorch", "GET", "/v1/layers/t2d/export", 200,
      check=lambda h, b: J(b)["definition"]["type"] == "BatchNormalization" and
      J(b)["definition"]["convention"] == "pytorch" and "type_given" not in J(b)["definition"]),
    C("export binary", "GET", "/v1/layers/bn/export", 200,
      headers={"Accept": "application/octet-stream"}, check=lambda h, b: ndx1_ok(b)),
    C("export pytorch binary", "GET", "/v1/layers/t2d/export", 200,
      headers={"Accept": "application/octet-stream"}, check=lambda h, b: ndx1_ok(b)),
    C("export bad format", "GET", "/v1/layers/bn/export?output_format=csv", 422),
    C("export 404", "GET", "/v1/layers/nope/export", 404),
    C("import", "POST", "/v1/layers/bn_copy/import", 201, body=lambda ex: ex["export"],
      headers=JSON, check=lambda h, b: h.get("location") == "/v1/layers/bn_copy" and
      J(b)["name"] == "bn_copy" and J(b)["convention_from"] == "request"),
    C("import again", "POST", "/v1/layers/bn_copy/import", 200, body=lambda ex: ex["export"],
      headers=JSON, check=lambda h, b: "location" not in h and  # max(exported, old + 1)
      J(b)["version"] == json.loads(EXPORTS["export"])["version"] + 1),
    C("import binary", "POST", "/v1/layers/bn_bin/import", 201,
      body=lambda ex: ex["export binary"], headers={"Content-Type": "application/octet-stream"}),
    C("import pytorch binary", "POST", "/v1/layers/t2d_bin/import", 201,
      body=lambda ex: ex["export pytorch binary"],
      headers={"Content-Type": "application/octet-stream"},
      check=lambda h, b: J(b).get("type_given") == "BatchNorm2d"),
    C("import if-match", "POST", "/v1/layers/bn_copy/import", 412, body=lambda ex: ex["export"],
      headers={"Content-Type": "application/json", "If-Match": '"1"'}),
    C("import malformed", "POST", "/v1/layers/bn_copy/import", 400, body="{",
      headers=JSON),
    C("import bad binary", "POST", "/v1/layers/bn_copy/import", 400,
      body=lambda ex: ex["export binary"][:-1] + bytes([ex["export binary"][-1] ^ 1]),
      headers={"Content-Type": "application/octet-stream"},
      check=lambda h, b: J(b)["error"]["field"] == "body"),
    C("import wrong type", "POST", "/v1/layers/bn_copy/import", 400,
      body=lambda ex: edited(ex["export"], ["counters", "train_steps"], "3"), headers=JSON,
      check=lambda h, b: J(b)["error"]["field"] == "counters.train_steps"),
    C("import invalid", "POST", "/v1/layers/bn_copy/import", 422, body={"format": "nothing"},
      check=lambda h, b: J(b)["error"]["field"] == "format"),
    C("import bad option", "POST", "/v1/layers/bn_copy/import", 422,
      body=lambda ex: edited(ex["export"], ["definition", "options", "epsilon"], -1),
      headers=JSON, check=lambda h, b: J(b)["error"]["field"] == "definition.options.epsilon"),
    C("import bad shape", "POST", "/v1/layers/bn_copy/import", 422,
      body=lambda ex: edited(ex["export"], ["arrays", "Scaling", "values"], [1, 1]),
      headers=JSON, check=lambda h, b: J(b)["error"]["code"] == "shape_mismatch" and
      J(b)["error"]["field"] == "arrays.Scaling"),
    C("import unknown field", "POST", "/v1/layers/bn_copy/import", 422,
      body=lambda ex: edited(ex["export"], ["colour"], 1), headers=JSON,
      check=lambda h, b: J(b)["error"]["code"] == "unknown_field"),
    C("import 415", "POST", "/v1/layers/bn_copy/import", 415, body="x",
      headers={"Content-Type": "text/plain"}),
    C("import 413", "POST", "/v1/layers/bn_copy/import", 413, body=BIG_JSON, headers=JSON),
    # -- shared arrays --
    C("shared list", "GET", "/v1/shared-arrays", 200),
    C("shared", "GET", "/v1/shared-arrays/g1?output_format=flat", 200),
    C("shared 404", "GET", "/v1/shared-arrays/nope", 404),
    C("shared bad format", "GET", "/v1/shared-arrays/g1?output_format=csv", 422),
    # -- HEAD and OPTIONS --
    C("head info", "HEAD", "/v1", 200),
    C("head layer", "HEAD", "/v1/layers/bn", 200),
    C("head layer 404", "HEAD", "/v1/layers/nope", 404),
    C("head metrics", "HEAD", "/metrics", 200),
    C("head export", "HEAD", "/v1/layers/bn/export", 200,
      headers={"Accept-Encoding": "gzip"}, check=lambda h, b: "content-encoding" not in h),
    C("head forward", "HEAD", "/v1/layers/bn/forward", 405,
      check=lambda h, b: h.get("allow") == "POST, OPTIONS"),
    C("options layers", "OPTIONS", "/v1/layers", 204,
      check=lambda h, b: h.get("allow") == "GET, HEAD, POST, OPTIONS"),
    C("options layer", "OPTIONS", "/v1/layers/bn", 204,
      check=lambda h, b: h.get("allow") == "GET, HEAD, PUT, DELETE, OPTIONS"),
    C("options forward", "OPTIONS", "/v1/layers/bn/forward", 204,
      check=lambda h, b: h.get("allow") == "POST, OPTIONS"),
    C("options export", "OPTIONS", "/v1/layers/bn/export/", 204,
      check=lambda h, b: h.get("allow") == "GET, HEAD, OPTIONS"),
    C("options 404", "OPTIONS", "/v1/nothing", 404),
    # -- content codings --
    C("forward gzip", "POST", "/v1/layers/bn/forward", 200, body=gz({"input": X}),
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
      check=lambda h, b: len(J(b)["output"]) == 2),
    C("forward x-gzip two members", "POST", "/v1/layers/bn/forward", 200,
      body=gzip.compress(b'{"input": ') + gzip.compress(json.dumps(X).encode() + b"}"),
      headers={"Content-Type": "application/json", "Content-Encoding": "X-GZIP"}),
    C("forward deflate", "POST", "/v1/layers/bn/forward", 200, body=deflated({"input": X}),
      headers={"Content-Type": "application/json", "Content-Encoding": "deflate"}),
    C("forward raw deflate", "POST", "/v1/layers/bn/forward", 200,
      body=raw_deflated({"input": X}),
      headers={"Content-Type": "application/json", "Content-Encoding": "deflate"}),
    C("import gzip", "POST", "/v1/layers/bn_gz/import", 201,
      body=lambda ex: gzip.compress(ex["export"]),
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    C("forward br", "POST", "/v1/layers/bn/forward", 415, body=json.dumps({"input": X}),
      headers={"Content-Type": "application/json", "Content-Encoding": "br"},
      check=lambda h, b: "br" in J(b)["error"]["message"]),
    C("forward stacked codings", "POST", "/v1/layers/bn/forward", 415, body=gz(gz({"input": X})),
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"}),
    C("get br", "GET", "/v1/layers/bn", 415, headers={"Content-Encoding": "br"}),
    C("options br", "OPTIONS", "/v1/layers/bn", 415, headers={"Content-Encoding": "compress"}),
    C("forward corrupt gzip", "POST", "/v1/layers/bn/forward", 400, body=b"\x1f\x8b\x08\x00garbage",
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    C("forward truncated gzip", "POST", "/v1/layers/bn/forward", 400,
      body=gz({"input": X})[:-9],
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    C("forward gzip bomb", "POST", "/v1/layers/bn/forward", 413,
      body=gzip.compress(b" " * (MAX_BODY * 4)),
      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
      check=lambda h, b: "decompressed" in J(b)["error"]["message"]),
    C("get gzip bomb", "GET", "/v1/layers/bn", 413, body=gzip.compress(b" " * (MAX_BODY * 4)),
      headers={"Content-Encoding": "gzip"}),
    C("forward gzip reply", "POST", "/v1/layers/bn/forward", 200, body=BIG_INPUT,
      headers={"Accept-Encoding": "gzip"},
      check=lambda h, b: h.get("content-encoding") == "gzip" and "accept-encoding" in
      h.get("vary", "").lower() and len(json.loads(gzip.decompress(b))["output"]) == 800),
    C("forward gzip refused", "POST", "/v1/layers/bn/forward", 200, body=BIG_INPUT,
      headers={"Accept-Encoding": "gzip;q=0, identity"},
      check=lambda h, b: "content-encoding" not in h and
      "accept-encoding" in h.get("vary", "").lower()),
    C("forward small reply", "POST", "/v1/layers/bn/forward", 200, body={"input": X},
      headers={"Accept-Encoding": "gzip"},
      check=lambda h, b: "content-encoding" not in h and "vary" not in h),
    # -- CORS (--cors-origins) --
    C("cors layer", "PUT", "/v1/layers/bn", 201, server="cors", body=BN),
    C("cors preflight", "OPTIONS", "/v1/layers/bn/forward", 204, server="cors",
      headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"},
      check=lambda h, b: h.get("access-control-allow-origin") == CORS_ORIGIN and
      h.get("access-control-allow-methods") == "POST, OPTIONS" and
      h.get("access-control-max-age") == "600" and
      "content-encoding" in h.get("access-control-allow-headers", "").lower() and
      "origin" in h.get("vary", "").lower() and "access-control-allow-credentials" not in h),
    C("cors preflight other origin", "OPTIONS", "/v1/layers/bn/forward", 204, server="cors",
      headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
      check=lambda h, b: not any(k.startswith("access-control-") for k in h)),
    C("cors get", "GET", "/v1/layers", 200, server="cors", headers={"Origin": CORS_ORIGIN},
      check=lambda h, b: h.get("access-control-allow-origin") == CORS_ORIGIN and
      h.get("access-control-expose-headers") == "X-Request-Id, ETag, X-Tensor-Shape, traceparent, Inference-Header-Content-Length"),
    C("cors error", "GET", "/v1/layers/nope", 404, server="cors",
      headers={"Origin": CORS_ORIGIN.upper().replace("HTTP", "http")},
      check=lambda h, b: "access-control-allow-origin" in h and "origin" in h.get("vary", "").lower()),
    C("cors big reply", "POST", "/v1/layers/bn/forward", 200, server="cors", body=BIG_INPUT,
      headers={"Origin": CORS_ORIGIN},
      check=lambda h, b: set(v.strip().lower() for v in h.get("vary", "").split(","))
      == {"origin", "accept-encoding"}),
    C("cors other origin", "GET", "/v1/layers", 200, server="cors",
      headers={"Origin": "http://evil.example"},
      check=lambda h, b: not any(k.startswith("access-control-") for k in h) and
      "origin" in h.get("vary", "").lower()),
    # -- limits: --max-layers 1 --
    C("limit first", "PUT", "/v1/layers/one", 201, server="small", body=BN),
    C("limit post", "POST", "/v1/layers", 429, server="small", body=dict(BN, name="two")),
    C("limit put", "PUT", "/v1/layers/two", 429, server="small", body=BN),
    C("limit replace", "PUT", "/v1/layers/one", 200, server="small", body=BN),
    # -- the Open Inference Protocol (/v2): its own bodies and error form --
    C("oip server", "GET", "/v2", 200),
    C("oip live", "GET", "/v2/health/live", 200),
    C("oip ready", "GET", "/v2/health/ready", 200),
    C("oip model", "GET", "/v2/models/bn", 200),
    C("oip model 404", "GET", "/v2/models/nope", 404),
    C("oip version 404", "GET", "/v2/models/bn/versions/999", 404),
    C("oip version 400", "GET", "/v2/models/bn/versions/x", 400),
    C("oip model ready", "GET", "/v2/models/bn/ready", 200),
    C("oip version ready 404", "GET", "/v2/models/bn/versions/999/ready", 404),
    C("oip not ready", "GET", "/v2/models/un/ready", 503),
    C("oip infer", "POST", "/v2/models/bn/infer", 200, body={
        "id": "42", "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X}]},
      check=lambda h, b: J(b)["id"] == "42" and J(b)["outputs"][0]["shape"] == [2, 3]),
    C("oip infer binary", "POST", "/v2/models/bn/infer", 200, body=OIP_BINARY + f32([1, 2, 3]),
      headers={"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(OIP_BINARY))},
      check=lambda h, b: h["content-type"] == "application/octet-stream" and
      len(b) == int(h["inference-header-content-length"]) + 12),
    C("oip infer 400", "POST", "/v2/models/bn/infer", 400, body={"inputs": []}),
    C("oip infer 404", "POST", "/v2/models/nope/infer", 404, body={"inputs": []}),
    C("oip infer version 404", "POST", "/v2/models/bn/versions/999/infer", 404, body={
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X}]}),
    C("oip infer 413", "POST", "/v2/models/bn/infer", 413, body=BIG_JSON, headers=JSON),
    C("oip infer 415", "POST", "/v2/models/bn/infer", 415, body="{}",
      headers={"Content-Type": "text/plain"}),
    C("oip train", "POST", "/v2/models/bn/train", 200, body={
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X},
                   {"name": "output_gradient", "shape": [2, 3], "datatype": "FP32", "data": X}],
        "parameters": {"optimizer": "sgd", "learning_rate": 0.01, "return_gradients": True}},
      check=lambda h, b: len(J(b)["outputs"]) == 4 and J(b)["parameters"]["version"] >= 2),
    C("oip train 400", "POST", "/v2/models/bn/train", 400, body={
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "INT8", "data": X}]}),
    C("oip train version 404", "POST", "/v2/models/bn/versions/999/train", 404, body={
        "inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": X}]}),
    # -- deletes last --
    C("delete if-match", "DELETE", "/v1/layers/pz", 412, headers={"If-Match": '"1"'}),
    C("delete", "DELETE", "/v1/layers/pz", 204),
    C("delete 404", "DELETE", "/v1/layers/pz", 404),
    C("delete body", "DELETE", "/v1/layers/bn", 400, body={}),
]


def run_case(spec, servers, case):
    srv = servers[case["server"]]
    label = "%s (%s %s)" % (case["id"], case["method"], case["path"])
    body = case["body"]
    if callable(body):
        try:
            body = body(EXPORTS)
        except KeyError as e:
            fail("%s: the export it imports was not taken (%s)" % (label, e))
            return
    status, heads, data = send(srv.port, case["method"], case["path"], body, case["headers"])
    valid = check_answer(spec, case, status, heads, data)
    if status != case["status"]:
        fail("%s: answered %d, expected %d: %s" % (label, status, case["status"], data[:300]))
        return
    if "x-request-id" not in heads:
        fail("%s: no X-Request-Id" % label)
        return
    if case["check"]:
        try:
            good = case["check"](heads, data)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            good = False
            heads = dict(heads, exception=repr(e))
        if not good:
            fail("%s: the case's own check failed: headers %s, body %s" % (label, heads,
                                                                            data[:300]))
            return
    if case["id"].startswith("export") and status == 200:
        EXPORTS[case["id"]] = data
    if valid:
        ok(label)


def check_auth(spec, srv):
    """Every operation that declares bearerAuth answers 401 without the key."""
    for template, item in spec.doc["paths"].items():
        path = template.replace("{name}", "bn").replace("{array}", "Scaling").replace(
            "{type}", "BatchNormalization").replace("{v}", "1")
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete"):
                continue
            needs = any("bearerAuth" in s for s in op.get("security", spec.doc.get("security", [])))
            case = {"id": "auth " + method.upper() + " " + template, "method": method.upper(),
                    "path": path}
            body = {} if method in ("put", "post") else None
            status, heads, data = send(srv.port, method.upper(), path, body)
            if not needs:
                if status == 401:
                    fail("%s: 401 on an operation without security" % case["id"])
                else:
                    ok(case["id"])
                continue
            valid = check_answer(spec, case, status, heads, data)
            if status != 401:
                fail("%s: answered %d without the key, expected 401" % (case["id"], status))
            elif valid:
                ok(case["id"])
    # with the key the same server answers
    status, _, _ = send(srv.port, "GET", "/v1/layers", None,
                        {"Authorization": "Bearer " + API_KEY})
    (ok if status == 200 else fail)("auth: GET /v1/layers with the key answers %d" % status)


def concrete(template):
    return template.replace("{name}", "bn").replace("{array}", "Scaling").replace(
        "{type}", "BatchNormalization").replace("{v}", "1")


def check_every_path(spec, srv):
    """Per path of openapi.yaml: OPTIONS (204, Allow), a method it lacks (405, Allow), an
    unknown query parameter (422), and a body on a GET (400)."""
    for template, item in spec.doc["paths"].items():
        path = concrete(template)
        if path.endswith("/import"):
            continue  # its POST would create a layer; its cases are in CASES
        missing = next(m for m in ("patch", "put", "delete", "post", "get") if m not in item)
        probes = [("OPTIONS", path, None, 204), (missing.upper(), path, None, 405)]
        if "get" in item:
            # the Open Inference Protocol (/v2) knows no 422: its invalid arguments are 400
            probes.append(("GET", path + "?no_such_parameter=1", None,
                           400 if path.startswith("/v2") else 422))
            probes.append(("GET", path, {"unexpected": "body"}, 400))
        for method, target, body, want in probes:
            case = {"id": "%s %s -> %d" % (method, target, want), "method": method,
                    "path": target}
            status, heads, data = send(srv.port, method, target, body)
            valid = check_answer(spec, case, status, heads, data)
            if status != want:
                fail("%s: answered %d: %s" % (case["id"], status, data[:200]))
            elif want in (204, 405) and "allow" not in heads:
                fail("%s: no Allow" % case["id"])
            elif valid:
                ok(case["id"])


def check_head_mirrors_get(servers):
    """HEAD answers the GET's status and headers with no body."""
    srv = servers["main"]
    for path in ("/healthz", "/v1", "/v1/types", "/v1/layers", "/v1/layers/bn",
                 "/v1/layers/bn/arrays/Scaling", "/v1/shared-arrays", "/v1/layers/nope"):
        gs, gh, gb = send(srv.port, "GET", path)
        hs, hh, hb = send(srv.port, "HEAD", path)
        same = gs == hs and hb == b"" and hh.get("content-type") == gh.get("content-type")
        if not same:
            fail("HEAD %s: %d %r vs GET %d (%d body bytes on HEAD)" % (path, hs, hh, gs, len(hb)))
        else:
            ok("HEAD %s mirrors GET" % path)


def report_coverage(spec):
    """The statuses each operation declares that no case provoked (information only)."""
    unreachable = {"500", "503", "507"}
    for template, item in spec.doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "options"):
                continue
            seen = COVERED.get((method.upper(), template), set())
            missing = [s for s in op.get("responses", {})
                       if s not in unreachable and s.isdigit() and int(s) not in seen]
            if missing and VERBOSE:
                print("not provoked: %s %s: %s" % (method.upper(), template, ", ".join(missing)))


def main():
    spec = Spec(OPENAPI)
    servers = {}
    try:
        servers["main"] = Server("--max-body-bytes", str(MAX_BODY))
        servers["auth"] = Server("--api-key", API_KEY)
        servers["small"] = Server("--max-layers", "1")
        servers["cors"] = Server("--cors-origins", CORS_ORIGIN)
        for case in CASES:
            run_case(spec, servers, case)
        check_auth(spec, servers["auth"])
        check_every_path(spec, servers["main"])
        check_head_mirrors_get(servers)
        report_coverage(spec)
    finally:
        for s in servers.values():
            s.stop()
    return summary("schema")


if __name__ == "__main__":
    sys.exit(main())
