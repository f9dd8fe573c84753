#!/usr/bin/env python3
"""normd conformance runner: plays the JSON case files of tests/conformance/cases against a server.

    python3 tests/conformance/runner.py --url http://127.0.0.1:8080 tests/conformance/cases
    python3 tests/conformance/runner.py --url URL --only fmt- --only err- -v tests/conformance/cases

The case format is the one the shared conformance suite's README defines: a case creates its
layers, plays its steps (one HTTP request each, with expectations on the status, the headers and
the body) and deletes its layers. This is the project's own implementation of that format, so a
clone without the shared suite can still judge its server. Standard library only, Python >= 3.9.

Prints `PASS id` or `FAIL id: step N (METHOD path): <first mismatch>` per case, then
`N passed, M failed`. Exit status: 0 all selected cases passed, 1 some failed, 2 no case was
found or the server is unreachable.
"""
import argparse
import base64
import binascii
import collections
import http.client
import json
import math
import os
import re
import secrets
import struct
import sys
import time
import urllib.parse

DEFAULT_TOL = {"rtol": 1e-4, "atol": 1e-5}
SPECIAL_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
DTYPES = {"FP32": "f", "FP64": "d"}  # API.md section 3: little-endian, one of these two
TENSOR_FORMS = ("nested", "flat", "b64")
MATCHER_KEYS = {"$form", "$shape", "$contains", "$type", "$one_of", "$absent", "$tol", "$value"}
PATH_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
PLACEHOLDER = re.compile(r"\{\{(prefix|name(?::([^{}]+))?)\}\}")

Tol = collections.namedtuple("Tol", "rtol atol")
Request = collections.namedtuple("Request", "method path body headers")
Response = collections.namedtuple("Response", "status headers body")  # headers: lower-case keys


class Missing:
    """The value at a path the response does not have (distinct from JSON null)."""

    def __repr__(self):
        return "<missing>"


MISSING = Missing()


class Mismatch(Exception):
    """The response (or a malformed case) fails an expectation; the message says where and how."""


class TensorError(ValueError):
    """A value that is not a tensor in any form API.md allows."""


# ---- tensors -----------------------------------------------------------------------------------

def as_number(value):
    """The float a JSON scalar stands for (a number or a NaN/Infinity string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return SPECIAL_NUMBERS.get(value)
    return None


def nested_to_tensor(value):
    """(shape, row-major values) of a nested list or a scalar; TensorError if ragged or not numeric."""
    number = as_number(value)
    if number is not None:
        return [], [number]
    if not isinstance(value, list):
        raise TensorError("non-numeric element %s" % brief(value))
    parts = [nested_to_tensor(item) for item in value]
    shapes = {tuple(shape) for shape, _ in parts}
    if len(shapes) > 1:
        raise TensorError("ragged nested list")
    inner = list(shapes.pop()) if shapes else []
    return [len(value)] + inner, [x for _, values in parts for x in values]


def checked_shape(shape):
    """`shape` if it is a list of non-negative integers, else TensorError."""
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TensorError("bad shape %s" % brief(shape))
    return shape


def unpack_le(raw, shape, datatype):
    """Values of little-endian `datatype` bytes, which must hold exactly prod(shape) elements."""
    code = DTYPES[datatype]
    count = math.prod(shape)
    size = struct.calcsize(code)
    if len(raw) != count * size:
        raise TensorError("%d bytes, shape %s needs %d" % (len(raw), shape, count * size))
    return list(struct.unpack("<%d%s" % (count, code), raw))


def flat_tensor(value):
    """(shape, values) of the flat form {"shape", "data"}."""
    shape = checked_shape(value.get("shape"))
    data = value["data"]
    if not isinstance(data, list):
        raise TensorError("data is not a list")
    numbers = [as_number(x) for x in data]
    if any(x is None for x in numbers):
        raise TensorError("non-numeric element in data")
    if len(numbers) != math.prod(shape):
        raise TensorError("%d values, shape %s needs %d" % (len(numbers), shape, math.prod(shape)))
    return shape, numbers


def b64_tensor(value):
    """(shape, values) of the base64 form {"shape", "datatype": FP32|FP64, "b64"}."""
    shape = checked_shape(value.get("shape"))
    datatype = value.get("datatype")
    if datatype not in DTYPES:
        raise TensorError("datatype %s is neither FP32 nor FP64" % brief(datatype))
    try:
        raw = base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise TensorError("bad base64 (%s)" % err) from err
    return shape, unpack_le(raw, shape, datatype)


def tensor_form(value):
    """Which API.md tensor form `value` is written in: "nested", "flat", "b64", or None."""
    if isinstance(value, list):
        return "nested"
    if isinstance(value, dict) and "b64" in value:
        return "b64"
    if isinstance(value, dict) and "data" in value:
        return "flat"
    return None


def to_tensor(value):
    """(shape, values) of a response value in any tensor form; scalars have shape []."""
    form = tensor_form(value)
    if form == "flat":
        return flat_tensor(value)
    if form == "b64":
        return b64_tensor(value)
    return nested_to_tensor(value)


def encode_binary(spec):
    """Body bytes and X-Tensor-Shape of a step's `binary` object (data nested or flat)."""
    try:
        nested_shape, values = nested_to_tensor(spec["data"])
        shape = checked_shape(spec.get("shape", nested_shape))
    except TensorError as err:
        raise Mismatch("bad binary body: %s" % err) from err
    datatype = spec.get("datatype", "FP32")
    if datatype not in DTYPES or math.prod(shape) != len(values):
        raise Mismatch("bad binary body: %d %s values for shape %s" % (len(values), datatype, shape))
    packed = struct.pack("<%d%s" % (len(values), DTYPES[datatype]), *values)
    return packed, ",".join(str(d) for d in shape)


# ---- comparison --------------------------------------------------------------------------------

def brief(value, limit=120):
    """A short printable form of a JSON value for mismatch messages."""
    text = repr(value) if isinstance(value, Missing) else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fmt(number):
    """A float as the cases write it: 9 significant digits, or NaN / Infinity / -Infinity."""
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return "%.9g" % number


def close(got, want, tol):
    """|got - want| <= atol + rtol*|want|; NaN and the infinities match only themselves."""
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want) or math.isinf(got) or math.isnan(got):
        return got == want
    return abs(got - want) <= tol.atol + tol.rtol * abs(want)


def abs_err(got, want):
    """|got - want| for reports: 0 for matching non-finite values, inf for mismatched ones."""
    if math.isfinite(got) and math.isfinite(want):
        return abs(got - want)
    return 0.0 if close(got, want, Tol(0.0, 0.0)) else math.inf


def under(path, prefix):
    """Whether `path` is `prefix` or inside it ("arrays" covers "arrays.Scaling", "outputs[1]")."""
    return prefix == "$" or path == prefix or path.startswith((prefix + ".", prefix + "["))


class Tolerances:
    """The tolerance of each expectation path: the default, then the case's `tolerance`, the
    step's, the longest matching `tolerances` prefix and enclosing `$tol` matchers, each
    overriding the keys it gives; all multiplied by --tol-scale."""

    def __init__(self, layers, prefixes, scale, overrides=()):
        self.layers = [layer for layer in layers if layer]
        self.prefixes = prefixes or {}
        self.scale = scale
        self.overrides = list(overrides)

    def at(self, path):
        """The scaled Tol for an expectation at `path`."""
        merged = {}
        for layer in self.layers + self.prefix_layer(path) + self.overrides:
            merged.update(layer)
        return Tol(float(merged["rtol"]) * self.scale, float(merged["atol"]) * self.scale)

    def prefix_layer(self, path):
        """The `tolerances` entry with the longest prefix covering `path`, as a list of 0 or 1."""
        matching = [prefix for prefix in self.prefixes if under(path, prefix)]
        return [self.prefixes[max(matching, key=len)]] if matching else []

    def with_override(self, tol):
        """A copy where the `$tol` object `tol` wins over everything else."""
        return Tolerances(self.layers, self.prefixes, self.scale, self.overrides + [tol])


def join_path(path, key):
    """The path of `key` inside the object at `path` ("$" is the body itself)."""
    return key if path == "$" else "%s.%s" % (path, key)


def index_suffix(shape, flat_index):
    """"[i][j]..." of a row-major flat index into `shape`."""
    indices = []
    for dim in reversed(shape):
        indices.append(flat_index % dim)
        flat_index //= dim
    return "".join("[%d]" % i for i in reversed(indices))


def compare(got, want, path, tols):
    """Raise Mismatch unless `got` (MISSING if the path is absent) meets the expectation `want`."""
    if is_matcher(want):
        return compare_matcher(got, want, path, tols)
    if got is MISSING:
        raise Mismatch("%s: missing, expected %s" % (path, brief(want)))
    if isinstance(want, dict):
        return compare_object(got, want, path, tols)
    if isinstance(want, list):
        return compare_list(got, want, path, tols)
    if as_number(want) is not None:
        return compare_number(got, as_number(want), path, tols.at(path))
    if type(got) is not type(want) or got != want:
        raise Mismatch("%s: got %s, expected %s" % (path, brief(got), brief(want)))
    return None


def compare_object(got, want, path, tols):
    """Key by key; keys the response has beyond those listed are ignored."""
    if not isinstance(got, dict):
        raise Mismatch("%s: got %s, expected an object" % (path, brief(got)))
    for key, value in want.items():
        compare(got.get(key, MISSING), value, join_path(path, key), tols)


def compare_list(got, want, path, tols):
    """A numeric rectangular list is a tensor; any other list is compared item by item."""
    try:
        tensor = nested_to_tensor(want)
    except TensorError:
        tensor = None
    if tensor is not None:
        return compare_tensor(got, tensor, path, tols.at(path))
    if not isinstance(got, list) or len(got) != len(want):
        raise Mismatch("%s: got %s, expected %s" % (path, brief(got), brief(want)))
    for i, (item, expected) in enumerate(zip(got, want)):
        compare(item, expected, "%s[%d]" % (path, i), tols)
    return None


def compare_tensor(got, want, path, tol):
    """Same shape, and every element within tolerance; reports the first element that is not."""
    want_shape, want_values = want
    try:
        shape, values = to_tensor(got)
    except TensorError as err:
        raise Mismatch("%s: got %s, expected a tensor (%s)" % (path, brief(got), err)) from err
    if shape != want_shape:
        raise Mismatch("%s: got shape %s, expected shape %s" % (path, shape, want_shape))
    bad = [i for i, (g, w) in enumerate(zip(values, want_values)) if not close(g, w, tol)]
    if bad:
        first = bad[0]
        worst = max(abs_err(g, w) for g, w in zip(values, want_values))
        raise Mismatch("%s%s: got %s, expected %s, max abs err %s, %d of %d elements off "
                       "(rtol %g, atol %g)" % (path, index_suffix(shape, first), fmt(values[first]),
                                               fmt(want_values[first]), fmt(worst), len(bad),
                                               len(values), tol.rtol, tol.atol))


def scalar_of(got):
    """The number a response value holds (a number, a NaN/Infinity string, a one-element tensor)."""
    number = as_number(got)
    if number is not None:
        return number
    try:
        _, values = to_tensor(got)
    except TensorError:
        return None
    return values[0] if len(values) == 1 else None


def compare_number(got, want, path, tol):
    """An expected number: the response must hold a number within tolerance of it."""
    number = scalar_of(got)
    if number is None:
        raise Mismatch("%s: got %s, expected the number %s" % (path, brief(got), fmt(want)))
    if not close(number, want, tol):
        raise Mismatch("%s: got %s, expected %s, abs err %s (rtol %g, atol %g)" % (
            path, fmt(number), fmt(want), fmt(abs_err(number, want)), tol.rtol, tol.atol))


def is_matcher(want):
    """An expected object with "$" keys is a matcher, not a key-by-key object expectation."""
    return isinstance(want, dict) and any(key.startswith("$") for key in want)


def compare_matcher(got, want, path, tols):
    """Apply every condition of a matcher object; `$absent: true` excludes all others."""
    unknown = sorted(set(want) - MATCHER_KEYS)
    if unknown:
        raise Mismatch("%s: unknown matcher key %s" % (path, ", ".join(unknown)))
    if "$tol" in want:
        tols = tols.with_override(want["$tol"])
    if want.get("$absent") is True:
        if got is not MISSING:
            raise Mismatch("%s: got %s, expected it absent" % (path, brief(got)))
        return
    if got is MISSING:
        raise Mismatch("%s: missing, expected %s" % (path, brief(want)))
    for key, check in MATCHER_CHECKS:
        if key in want:
            check(got, want[key], path, tols)


def check_type(got, name, path, _tols):
    """`$type`: the JSON type of the value (a number is never a boolean)."""
    tests = {"string": lambda v: isinstance(v, str),
             "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
             "object": lambda v: isinstance(v, dict),
             "array": lambda v: isinstance(v, list),
             "boolean": lambda v: isinstance(v, bool)}
    if name not in tests:
        raise Mismatch("%s: unknown $type %s" % (path, brief(name)))
    if not tests[name](got):
        raise Mismatch("%s: got %s, expected a %s" % (path, brief(got), name))


def check_form(got, form, path, _tols):
    """`$form`: the tensor is written in this form (and is a valid tensor)."""
    if form not in TENSOR_FORMS:
        raise Mismatch("%s: unknown $form %s" % (path, brief(form)))
    if tensor_form(got) != form:
        raise Mismatch("%s: got %s, expected a tensor in the %s form" % (path, brief(got), form))
    try:
        to_tensor(got)
    except TensorError as err:
        raise Mismatch("%s: got an invalid %s tensor (%s)" % (path, form, err)) from err


def check_shape(got, shape, path, _tols):
    """`$shape`: the value is a tensor of this shape."""
    try:
        got_shape, _ = to_tensor(got)
    except TensorError as err:
        raise Mismatch("%s: got %s, expected a tensor (%s)" % (path, brief(got), err)) from err
    if got_shape != shape:
        raise Mismatch("%s: got shape %s, expected shape %s" % (path, got_shape, shape))


def check_contains(got, text, path, _tols):
    """`$contains`: a string holding `text`, ignoring case (as the official runner does)."""
    if not isinstance(got, str) or text.lower() not in got.lower():
        raise Mismatch("%s: got %s, expected a string containing %s" % (path, brief(got), brief(text)))


def check_one_of(got, options, path, tols):
    """`$one_of`: at least one of the expectations is met."""
    for option in options:
        try:
            compare(got, option, path, tols)
            return
        except Mismatch:
            continue
    raise Mismatch("%s: got %s, expected one of %s" % (path, brief(got), brief(options)))


def check_value(got, value, path, tols):
    """`$value`: the ordinary expectation, under the matcher's `$tol` if any."""
    compare(got, value, path, tols)


MATCHER_CHECKS = (("$type", check_type), ("$form", check_form), ("$shape", check_shape),
                  ("$contains", check_contains), ("$one_of", check_one_of), ("$value", check_value))


# ---- paths and substitution --------------------------------------------------------------------

def parse_path(path):
    """Tokens of an expectation path: "a.b[1]" -> ["a", "b", 1]; "$" (or "$." ...) is the body."""
    rest = path[1:] if path.startswith("$") else path
    tokens, pos = [], 0
    while pos < len(rest):
        match = PATH_TOKEN.match(rest, pos)
        if not match:
            raise Mismatch("bad expectation path %r" % path)
        tokens.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return tokens


def lookup(doc, path):
    """The value at `path` in a response document, or MISSING."""
    current = doc
    for token in parse_path(path):
        if isinstance(token, int):
            found = isinstance(current, list) and token < len(current)
        else:
            found = isinstance(current, dict) and token in current
        if not found:
            return MISSING
        current = current[token]
    return current


def layer_names(case, prefix):
    """{"main": PREFIX + id, KEY: PREFIX + id + "-" + KEY for each extra layer}."""
    main = prefix + case["id"]
    names = {"main": main}
    names.update({key: "%s-%s" % (main, key) for key in (case.get("extra_layers") or {})})
    return names


def layer_name(names, key):
    """The name of layer `key`; a key the case does not declare is a case error."""
    if key not in names:
        raise Mismatch("layer %r is neither \"main\" nor an extra_layers key" % key)
    return names[key]


def substitute(value, names, prefix):
    """`value` with {{name}}, {{name:KEY}} and {{prefix}} replaced in every string and key."""
    if isinstance(value, str):
        def replace(match):
            if match.group(1) == "prefix":
                return prefix
            return layer_name(names, match.group(2) or "main")
        return PLACEHOLDER.sub(replace, value)
    if isinstance(value, list):
        return [substitute(item, names, prefix) for item in value]
    if isinstance(value, dict):
        return {substitute(k, names, prefix): substitute(v, names, prefix) for k, v in value.items()}
    return value


# ---- HTTP --------------------------------------------------------------------------------------

class Client:
    """Sends each request on a fresh HTTP/1.1 connection, so no case depends on another's socket."""

    def __init__(self, url, timeout, verbose):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("--url must look like http://HOST:PORT, got %r" % url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self.verbose = verbose

    def request(self, method, path, body=None, headers=None):
        """The Response; a network failure becomes a Mismatch saying "connection error"."""
        started = time.monotonic()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.base + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            response = Response(resp.status, merge_headers(resp.getheaders()), resp.read())
        except (OSError, http.client.HTTPException) as err:
            raise Mismatch("connection error: %s" % (str(err) or type(err).__name__)) from err
        finally:
            conn.close()
        if self.verbose:
            print("    %s %s -> %d (%.3f s)" % (method, path, response.status,
                                               time.monotonic() - started), file=sys.stderr)
        return response


def merge_headers(pairs):
    """Response headers by lower-case name; repeated ones joined with ", " as HTTP allows."""
    merged = {}
    for name, value in pairs:
        key = name.lower()
        merged[key] = merged[key] + ", " + value if key in merged else value
    return merged


def step_body(step):
    """Body bytes and default headers of a step: `body`, `raw_body` or `binary` (at most one)."""
    kinds = [kind for kind in ("body", "raw_body", "binary") if kind in step]
    if len(kinds) > 1:
        raise Mismatch("a step gives only one of body, raw_body, binary (got %s)" % ", ".join(kinds))
    if "binary" in step:
        data, shape = encode_binary(step["binary"])
        return data, {"Content-Type": "application/octet-stream", "X-Tensor-Shape": shape}
    if "raw_body" in step:
        headers = {"Content-Type": step["content_type"]} if "content_type" in step else {}
        return step["raw_body"].encode("utf-8"), headers
    if "body" in step:
        return json.dumps(step["body"]).encode("utf-8"), {"Content-Type": "application/json"}
    return None, {}


def query_text(value):
    """A query parameter as text: strings as they are, anything else as JSON (true, 0.5)."""
    return value if isinstance(value, str) else json.dumps(value)


def step_path(step, names):
    """The absolute request path: `path` as is when it starts with "/", else under the layer."""
    path = step.get("path", "")
    if not path.startswith("/"):
        base = "/v1/layers/" + layer_name(names, step.get("layer", "main"))
        path = base + "/" + path if path else base
    query = step.get("query")
    if query:
        path += "?" + urllib.parse.urlencode({k: query_text(v) for k, v in query.items()})
    return path


def build_request(step, names):
    """The request a (substituted) step describes; the step's `headers` win over defaults."""
    body, headers = step_body(step)
    headers.update(step.get("headers") or {})
    method = step.get("method") or ("POST" if body is not None else "GET")
    return Request(method.upper(), step_path(step, names), body, headers)


# ---- response checks ---------------------------------------------------------------------------

def media_type(resp):
    """The response's Content-Type without parameters, lower case."""
    return resp.headers.get("content-type", "").split(";")[0].strip().lower()


def snippet(resp):
    """The start of a response body for messages."""
    if media_type(resp) == "application/octet-stream":
        return "<%d binary bytes>" % len(resp.body)
    return resp.body[:200].decode("utf-8", "replace") or "<empty>"


def decode_binary(resp):
    """A binary response as the flat tensor {"shape", "data"}: FP32 little-endian, X-Tensor-Shape."""
    text = resp.headers.get("x-tensor-shape")
    if text is None:
        raise Mismatch("binary response without X-Tensor-Shape")
    try:
        dims = "".join(text.split())
        shape = checked_shape([int(d) for d in dims.split(",")] if dims else [])
        return {"shape": shape, "data": unpack_le(resp.body, shape, "FP32")}
    except ValueError as err:  # int() or TensorError
        raise Mismatch("bad binary response (X-Tensor-Shape %r): %s" % (text, err)) from err


def response_document(resp):
    """The body as JSON (MISSING when empty), or the decoded tensor when it is binary."""
    if media_type(resp) == "application/octet-stream":
        return decode_binary(resp)
    if not resp.body:
        return MISSING
    try:
        return json.loads(resp.body.decode("utf-8"))
    except ValueError as err:
        raise Mismatch("body is not JSON (%s): %s" % (err, snippet(resp))) from err


def check_status(resp, want):
    """`expect_status`: an int or a list of them; absent means any 2xx."""
    if want is None:
        ok, wanted = 200 <= resp.status < 300, "2xx"
    else:
        allowed = want if isinstance(want, list) else [want]
        ok, wanted = resp.status in allowed, " or ".join(str(s) for s in allowed)
    if not ok:
        raise Mismatch("status %d, expected %s; body %s" % (resp.status, wanted, snippet(resp)))


def check_content_type(resp, want):
    """`expect_content_type`: the media type, parameters and case ignored."""
    if media_type(resp) != want.lower():
        raise Mismatch("Content-Type %r, expected %r" % (resp.headers.get("content-type"), want))


def check_headers(resp, expected, tols):
    """`expect_headers`: exact values with all spaces ignored, or matchers on the header text."""
    for name, want in expected.items():
        got = resp.headers.get(name.lower(), MISSING)
        if isinstance(want, dict):
            compare(got, want, "header " + name, tols)
        elif got is MISSING:
            raise Mismatch("header %s missing, expected %r" % (name, want))
        elif "".join(got.split()) != "".join(str(want).split()):
            raise Mismatch("header %s is %r, expected %r" % (name, got, want))


def error_object(doc):
    """The "error" object of an error body, or a Mismatch naming what the body holds."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        raise Mismatch("no {\"error\": {...}} object in the body %s" % brief(doc))
    return error


def check_error_body(status, doc):
    """Every status >= 400 carries {"error": {"status": <that status>, "code", "message"}}."""
    error = error_object(doc)
    if type(error.get("status")) is not int or error["status"] != status:
        raise Mismatch("error.status %s, HTTP status %d" % (brief(error.get("status", MISSING)), status))
    for field in ("code", "message"):
        if not isinstance(error.get(field), str):
            raise Mismatch("error.%s %s is not a string" % (field, brief(error.get(field, MISSING))))


def as_list(value):
    """A scalar-or-list case field as a list."""
    return value if isinstance(value, list) else [value]


def check_error_expectations(step, doc):
    """`expect_error_code` (one of) and `expect_error_names` (each in error.field or .message)."""
    if "expect_error_code" in step:
        code = error_object(doc).get("code")
        if code not in as_list(step["expect_error_code"]):
            raise Mismatch("error.code %s, expected %s" % (brief(code), brief(step["expect_error_code"])))
    for name in as_list(step.get("expect_error_names", [])):
        error = error_object(doc)
        places = [error.get(key) for key in ("field", "message")]
        if not any(isinstance(p, str) and name.lower() in p.lower() for p in places):
            raise Mismatch("neither error.field nor error.message names %r: %s" % (name, brief(error)))


def needs_document(step, resp):
    """Parse the body only when something is checked in it, so other steps accept any body."""
    checks = ("expect", "expect_error_code", "expect_error_names")
    return resp.status >= 400 or any(key in step for key in checks)


def check_response(step, resp, tols):
    """Every expectation of a step, in the order status, media type, headers, error body, values."""
    check_status(resp, step.get("expect_status"))
    if "expect_content_type" in step:
        check_content_type(resp, step["expect_content_type"])
    check_headers(resp, step.get("expect_headers") or {}, tols)
    if not needs_document(step, resp):
        return
    doc = response_document(resp)
    if resp.status >= 400:
        check_error_body(resp.status, doc)
    check_error_expectations(step, doc)
    for path, want in (step.get("expect") or {}).items():
        compare(lookup(doc, path), want, path, tols)


# ---- cases -------------------------------------------------------------------------------------

class Run:
    """One run's settings: where the server is, the layer-name prefix and the tolerance scale."""

    def __init__(self, client, prefix, tol_scale):
        self.client = client
        self.prefix = prefix
        self.tol_scale = tol_scale

    def case(self, case):
        """Play one case; raise Mismatch at the first failure. Its layers are always deleted."""
        names = layer_names(case, self.prefix)
        try:
            self.create_layers(case, names)
            for index, step in enumerate(case["steps"], start=1):
                self.step(case, index, step, names)
        finally:
            self.delete_layers(names)

    def create_layers(self, case, names):
        """PUT `layer` and each non-null extra layer, expecting 200 or 201."""
        definitions = {"main": case.get("layer")}
        definitions.update(case.get("extra_layers") or {})
        for key, definition in definitions.items():
            if definition is None:
                continue
            path = "/v1/layers/" + names[key]
            body = json.dumps(substitute(definition, names, self.prefix)).encode("utf-8")
            try:
                resp = self.client.request("PUT", path, body, {"Content-Type": "application/json"})
                if resp.status not in (200, 201):
                    raise Mismatch("status %d, expected 200 or 201; body %s" % (resp.status, snippet(resp)))
            except Mismatch as err:
                raise Mismatch("setup (PUT %s): %s" % (path, err)) from err

    def delete_layers(self, names):
        """DELETE every layer name of the case, whatever the answer (or its absence)."""
        for name in names.values():
            try:
                self.client.request("DELETE", "/v1/layers/" + name)
            except Mismatch:
                continue

    def step(self, case, index, raw_step, names):
        """Send one step's request and check its response; failures name the step."""
        where = "step %d" % index
        try:
            step = substitute(raw_step, names, self.prefix)
            request = build_request(step, names)
            where += " (%s %s)" % (request.method, request.path)
            resp = self.client.request(*request)
            tols = Tolerances([DEFAULT_TOL, case.get("tolerance"), step.get("tolerance")],
                              step.get("tolerances"), self.tol_scale)
            check_response(step, resp, tols)
        except Mismatch as err:
            raise Mismatch("%s: %s" % (where, err)) from err


def case_files(paths):
    """The given files, and every *.json under the given folders, in sorted order."""
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        for root, dirs, names in os.walk(path):
            dirs.sort()
            files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(".json"))
    return files


def load_cases(paths):
    """Every case of the files (a file holds one case object or a list of them)."""
    cases = []
    for path in case_files(paths):
        with open(path, encoding="utf-8") as handle:
            try:
                doc = json.load(handle)
            except ValueError as err:
                raise ValueError("%s: not JSON: %s" % (path, err)) from err
        for case in doc if isinstance(doc, list) else [doc]:
            check_case(path, case)
            cases.append(case)
    return cases


def check_case(path, case):
    """Refuse a case without the fields every run needs, before any request is sent."""
    if not (isinstance(case, dict) and isinstance(case.get("id"), str)
            and isinstance(case.get("steps"), list)
            and all(isinstance(step, dict) for step in case["steps"])):
        raise ValueError("%s: a case needs a string \"id\" and a list of step objects" % path)


def parse_args(argv):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Run normd conformance cases against a server.")
    parser.add_argument("--url", required=True, help="the server, http://HOST:PORT")
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTR",
                        help="run only cases whose id contains SUBSTR (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per request")
    parser.add_argument("--tol-scale", type=float, default=1.0, metavar="K",
                        help="multiply every tolerance by K (margin checks)")
    parser.add_argument("--prefix", help="layer-name prefix (default: ct + a random token + -)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each request to stderr")
    parser.add_argument("cases", nargs="+", metavar="CASES", help="case files or folders of *.json")
    return parser.parse_args(argv)


def run_all(run, cases):
    """Play the cases, print one line each and the totals; the number that failed."""
    failed = 0
    for case in cases:
        try:
            run.case(case)
            print("PASS %s" % case["id"], flush=True)
        except Mismatch as err:
            failed += 1
            print("FAIL %s: %s" % (case["id"], err), flush=True)
        except Exception as err:  # a malformed case must not stop the run; say what broke
            failed += 1
            print("FAIL %s: runner error on this case: %s: %s" % (case["id"], type(err).__name__, err),
                  flush=True)
    print("%d passed, %d failed" % (len(cases) - failed, failed))
    return failed


def main(argv=None):
    """Exit status 0 (all passed), 1 (some failed) or 2 (no case, or no server)."""
    args = parse_args(argv)
    try:
        client = Client(args.url, args.timeout, args.verbose)
        cases = load_cases(args.cases)
    except (OSError, ValueError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 2
    cases = [c for c in cases if not args.only or any(s in c.get("id", "") for s in args.only)]
    if not cases:
        print("error: no case found in %s%s" % (" ".join(args.cases),
              " matching --only " + " ".join(args.only) if args.only else ""), file=sys.stderr)
        return 2
    try:
        client.request("GET", "/healthz")
    except Mismatch as err:
        print("error: server unreachable at %s (%s)" % (args.url, err), file=sys.stderr)
        return 2
    prefix = args.prefix if args.prefix is not None else "ct" + secrets.token_hex(3) + "-"
    return 1 if run_all(Run(client, prefix, args.tol_scale), cases) else 0


if __name__ == "__main__":
    sys.exit(main())
