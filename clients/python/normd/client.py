"""client.py - Client: every /v1 route of normd and the Open Inference Protocol (KServe V2)
routes, over one keep-alive connection.

Tensors: a numpy array or a normd.Tensor travels as little-endian float32 bytes (binary bodies
where the route takes them, the base64 JSON form elsewhere) and comes back as the same kind;
nested lists travel as JSON and come back as nested lists."""
import json
import urllib.parse

from ._http import NormdError, Transport
from ._tensor import (Tensor, b64_form, binary_kind, decode_b64_tensors, flatten, from_f32_bytes,
                      is_numpy, json_default, list_shape, nest, parse_shape_header, shape_header,
                      to_f32_bytes, _numpy)

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
_KINDS = (None, "list", "numpy", "tensor")


def _q(name):
    """A path segment, escaped."""
    return urllib.parse.quote(str(name), safe="")


def _if_match(version):
    if version is None:
        return {}
    return {"If-Match": version if isinstance(version, str) else '"%d"' % int(version)}


def _etag_version(headers):
    tag = headers.get("etag", "").strip().lstrip("W/").strip('"')
    return int(tag) if tag.isdigit() else None


def _check_kind(as_):
    if as_ not in _KINDS:
        raise ValueError("as_ must be one of 'list', 'numpy', 'tensor', not %r" % (as_,))


class InferResult:
    """The answer of an OIP infer: `outputs` (name -> tensor, in the reply's order), `output`
    (the first one), `model_name`, `model_version`, `id`, `parameters`, and `response` (the JSON
    part of the reply as sent)."""

    def __init__(self, response, outputs):
        self.response = response
        self.outputs = outputs
        self.model_name = response.get("model_name")
        self.model_version = response.get("model_version")
        self.id = response.get("id")
        self.parameters = response.get("parameters") or {}

    @property
    def output(self):
        return next(iter(self.outputs.values())) if self.outputs else None


class Client:
    """A normd client.

        c = Client("http://127.0.0.1:8080", api_key=None, timeout=30, retries=2)

    Errors raise NormdError (status, code, field, message, request_id); a transport failure is
    its subclass NormdConnectionError (status 0). GET, HEAD, PUT and DELETE are retried up to
    `retries` times after a transport error or a 503 (backoff `backoff` seconds, doubling); POST
    only when the connection failed before the request was sent. Not for concurrent use from
    several threads at once (calls are serialized)."""

    def __init__(self, base_url="http://127.0.0.1:8080", api_key=None, timeout=30.0, retries=2,
                 backoff=0.05, headers=None, ssl_context=None):
        self._t = Transport(base_url, api_key, timeout, retries, backoff, headers, ssl_context)
        self._oip_inputs = {}

    # ---- plumbing ----

    def close(self):
        """Closes the connection (the next call opens a new one)."""
        self._t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def connections_opened(self):
        """How many TCP connections this client has opened (1 while keep-alive holds)."""
        return self._t.opened_total()

    def _json(self, method, path, body=None, query=None, headers=None, ok=(200,)):
        h = {"Accept": JSON_TYPE}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body, default=json_default, allow_nan=False).encode("utf-8")
            h["Content-Type"] = JSON_TYPE
        return self._t.request(method, path, query, data, h, ok)

    def request(self, method, path, body=None, query=None, headers=None):
        """Any route: a dict body goes as JSON, bytes as they are; answers the Reply (status,
        headers, body; .json()). Raises NormdError on a status other than 2xx."""
        h = dict(headers or {})
        data = body
        if isinstance(body, (dict, list)):
            data = json.dumps(body, default=json_default).encode("utf-8")
            h.setdefault("Content-Type", JSON_TYPE)
        return self._t.request(method, path, query, data, h, ok=range(200, 300))

    # ---- health, metrics, server ----

    def health(self):
        """GET /healthz: {"status": "ok"}."""
        return self._json("GET", "/healthz").json()

    def ready(self):
        """GET /readyz: {"status": "ready"}; NormdError 503 while starting or draining."""
        return self._json("GET", "/readyz").json()

    def is_ready(self):
        """True when /readyz answers 200."""
        try:
            self._t.request("GET", "/readyz", ok=(200,))
            return True
        except NormdError as e:
            if e.status == 503:
                return False
            raise

    def metrics(self):
        """GET /metrics: the Prometheus text."""
        return self._t.request("GET", "/metrics", headers={"Accept": "text/plain"}).body.decode("utf-8")

    def info(self):
        """GET /v1: server information."""
        return self._json("GET", "/v1").json()

    def types(self):
        """GET /v1/types."""
        return self._json("GET", "/v1/types").json()

    def type_options(self, type_name):
        """GET /v1/types/{type}/options."""
        return self._json("GET", "/v1/types/%s/options" % _q(type_name)).json()

    # ---- layers ----

    def list_layers(self):
        """GET /v1/layers: the list of {name, type, initialized, version}."""
        doc = self._json("GET", "/v1/layers").json()
        return doc["layers"] if isinstance(doc, dict) and "layers" in doc else doc

    def create_layer(self, definition=None, **fields):
        """POST /v1/layers: a definition dict and/or its fields as keywords
        (name=, type=, input=, options=, arrays=, convention=, ...). Answers the information.
        Arrays given as numpy arrays or Tensor travel as exact base64 float32."""
        body = dict(definition or {})
        body.update(fields)
        return self._json("POST", "/v1/layers", body, ok=(201,)).json()

    def put_layer(self, name, definition=None, if_match=None, **fields):
        """PUT /v1/layers/{name}: create or replace; answers the information."""
        body = dict(definition or {})
        body.update(fields)
        return self._json("PUT", "/v1/layers/" + _q(name), body, headers=_if_match(if_match),
                          ok=(200, 201)).json()

    def get_layer(self, name):
        """GET /v1/layers/{name}: the information."""
        return self._json("GET", "/v1/layers/" + _q(name)).json()

    def delete_layer(self, name, if_match=None):
        """DELETE /v1/layers/{name}."""
        self._json("DELETE", "/v1/layers/" + _q(name), headers=_if_match(if_match), ok=(204,))

    def initialize(self, name, input=None, seed=None, reinitialize=None):
        """POST /v1/layers/{name}/initialize; answers the information."""
        body = {k: v for k, v in (("input", input), ("seed", seed), ("reinitialize", reinitialize))
                if v is not None}
        return self._json("POST", "/v1/layers/%s/initialize" % _q(name), body).json()

    def forward(self, name, input=None, inputs=None, mode=None, batch=None, output_format=None,
                full=False):
        """POST /v1/layers/{name}/forward. A numpy array or Tensor goes as a binary body and
        comes back as the same kind; nested lists go as JSON and come back as nested lists.
        `inputs` (a list of examples) is JSON. Answers the output, or with full=True
        {"output" (or "outputs"), "version"}."""
        kind = binary_kind(input)
        path = "/v1/layers/%s/forward" % _q(name)
        if kind and inputs is None:
            if output_format is not None:
                raise ValueError("output_format applies to JSON; a binary forward answers binary")
            shape, data = to_f32_bytes(input)
            if shape:  # X-Tensor-Shape takes 1 to 9 dimensions; a scalar goes as JSON
                r = self._t.request("POST", path, {"mode": mode, "batch": batch}, data,
                                    {"Content-Type": BINARY_TYPE, "X-Tensor-Shape": shape_header(shape),
                                     "Accept": BINARY_TYPE})
                out = from_f32_bytes(r.body, parse_shape_header(r.headers.get("x-tensor-shape")), kind)
                return {"output": out, "version": _etag_version(r.headers)} if full else out
        body = {}
        if inputs is not None:
            body["inputs"] = inputs
            kind = binary_kind(inputs[0]) if inputs else None
        if input is not None:
            body["input"] = input
        for k, v in (("mode", mode), ("batch", batch), ("output_format", output_format)):
            if v is not None:
                body[k] = v
        doc = self._json("POST", path, body).json()
        if kind:
            doc = decode_b64_tensors(doc, kind)
        if full:
            return doc
        return doc["outputs"] if "outputs" in doc else doc["output"]

    def train_step(self, name, input, output_gradient=None, target=None, loss=None, optimizer=None,
                   returns=None, output_format=None, **fields):
        """POST /v1/layers/{name}/train-step (JSON only; numpy arrays and Tensor travel as base64
        float32 and come back as the same kind). `returns` is the route's "return" list.
        Answers the reply dict (always "version"). Never retried once sent."""
        body = {"input": input}
        for k, v in (("output_gradient", output_gradient), ("target", target), ("loss", loss),
                     ("optimizer", optimizer), ("return", returns), ("output_format", output_format)):
            if v is not None:
                body[k] = v
        body.update(fields)
        doc = self._json("POST", "/v1/layers/%s/train-step" % _q(name), body).json()
        kind = binary_kind(input)
        return decode_b64_tensors(doc, kind) if kind else doc

    def extract(self, name, keys, output_format=None, as_=None):
        """POST /v1/layers/{name}/extract: {key: value}. as_="numpy" or "tensor" fetches the arrays
        as base64 and decodes them."""
        _check_kind(as_)
        body = {"keys": keys}
        if as_ in ("numpy", "tensor"):
            output_format = "b64"
        if output_format is not None:
            body["output_format"] = output_format
        doc = self._json("POST", "/v1/layers/%s/extract" % _q(name), body).json()
        return decode_b64_tensors(doc, as_) if as_ in ("numpy", "tensor") else doc

    # ---- arrays ----

    def list_arrays(self, name):
        """GET /v1/layers/{name}/arrays: {"name", "arrays": [...], "version"}."""
        return self._json("GET", "/v1/layers/%s/arrays" % _q(name)).json()

    def get_array(self, name, array, as_=None, output_format=None):
        """GET /v1/layers/{name}/arrays/{array}: the values. as_="numpy" or "tensor" fetches them
        as binary (Accept: application/octet-stream); otherwise nested lists, or the JSON reply
        {"name", "array"} when output_format is given."""
        _check_kind(as_)
        path = "/v1/layers/%s/arrays/%s" % (_q(name), _q(array))
        if as_ in ("numpy", "tensor"):
            r = self._t.request("GET", path, None, None, {"Accept": BINARY_TYPE})
            return from_f32_bytes(r.body, parse_shape_header(r.headers.get("x-tensor-shape")), as_)
        doc = self._json("GET", path, query={"output_format": output_format}).json()
        return doc if output_format is not None else doc["array"]

    def put_array(self, name, array, value, if_match=None):
        """PUT /v1/layers/{name}/arrays/{array}: a numpy array or Tensor as a binary body, anything
        else as {"array": value}. Answers {"name", "version"}."""
        path = "/v1/layers/%s/arrays/%s" % (_q(name), _q(array))
        h = _if_match(if_match)
        if binary_kind(value):
            shape, data = to_f32_bytes(value)
            if shape:
                h.update({"Content-Type": BINARY_TYPE, "X-Tensor-Shape": shape_header(shape),
                          "Accept": JSON_TYPE})
                return self._t.request("PUT", path, None, data, h).json()
        return self._json("PUT", path, {"array": value}, headers=h).json()

    # ---- export, import, shared arrays ----

    def export(self, name, binary=False, output_format=None):
        """GET /v1/layers/{name}/export: the JSON document (dict), or with binary=True the binary
        export (bytes)."""
        path = "/v1/layers/%s/export" % _q(name)
        if binary:
            return self._t.request("GET", path, None, None, {"Accept": BINARY_TYPE}).body
        return self._json("GET", path, query={"output_format": output_format}).json()

    def import_layer(self, name, document, if_match=None):
        """POST /v1/layers/{name}/import: a JSON export (dict) or a binary one (bytes). Answers the
        information; 201 when created, 200 when replaced."""
        path = "/v1/layers/%s/import" % _q(name)
        h = _if_match(if_match)
        if isinstance(document, (bytes, bytearray, memoryview)):
            h.update({"Content-Type": BINARY_TYPE, "Accept": JSON_TYPE})
            return self._t.request("POST", path, None, bytes(document), h, ok=(200, 201)).json()
        return self._json("POST", path, document, headers=h, ok=(200, 201)).json()

    def list_shared_arrays(self):
        """GET /v1/shared-arrays: the names."""
        return self._json("GET", "/v1/shared-arrays").json()["shared_arrays"]

    def get_shared_array(self, name, as_=None, output_format=None):
        """GET /v1/shared-arrays/{name}: {"name", "array", "layers", "version"}; as_="numpy" or
        "tensor" decodes "array"."""
        _check_kind(as_)
        if as_ in ("numpy", "tensor"):
            output_format = "b64"
        doc = self._json("GET", "/v1/shared-arrays/" + _q(name),
                         query={"output_format": output_format}).json()
        return decode_b64_tensors(doc, as_) if as_ in ("numpy", "tensor") else doc

    # ---- Open Inference Protocol (KServe V2) ----

    def _model_path(self, model, version):
        p = "/v2/models/" + _q(model)
        return p + "/versions/" + _q(version) if version is not None else p

    def server_metadata(self):
        """GET /v2: {"name", "version", "extensions"}."""
        return self._json("GET", "/v2").json()

    def server_live(self):
        """GET /v2/health/live answers 200."""
        return self._oip_ok("/v2/health/live")

    def server_ready(self):
        """GET /v2/health/ready answers 200."""
        return self._oip_ok("/v2/health/ready")

    def model_ready(self, model, version=None):
        """GET /v2/models/{model}[/versions/{v}]/ready answers 200."""
        return self._oip_ok(self._model_path(model, version) + "/ready")

    def _oip_ok(self, path):
        try:
            self._t.request("GET", path, ok=(200,))
            return True
        except NormdError as e:
            if e.status in (400, 404, 503):
                return False
            raise

    def model_metadata(self, model, version=None):
        """GET /v2/models/{model}[/versions/{v}]: {"name", "versions", "platform", "inputs",
        "outputs"}."""
        return self._json("GET", self._model_path(model, version)).json()

    def _input_name(self, model):
        name = self._oip_inputs.get(model)
        if name is None:
            name = self.model_metadata(model)["inputs"][0]["name"]
            self._oip_inputs[model] = name
        return name

    def infer(self, model, input=None, inputs=None, version=None, input_name=None, outputs=None,
              binary=None, binary_output=None, parameters=None, id=None, raw=False, as_=None):
        """POST /v2/models/{model}[/versions/{v}]/infer.

        input: one tensor (its name from the model's metadata unless input_name is given), or
        inputs: {name: tensor}. A numpy array or Tensor goes with the binary tensor data
        extension (binary=False sends JSON `data`); numpy float64/float16 go as FP64/FP16, the
        rest as FP32. Nested lists go as JSON FP32 `data`. binary_output (default: as the input)
        asks for binary outputs. outputs: names of the outputs wanted. raw=True sends the raw
        binary request (Inference-Header-Content-Length: 0, the body one input's bytes).
        Outputs come back as the input's kind (as_ overrides: "list", "numpy", "tensor").
        Answers an InferResult."""
        _check_kind(as_)
        if inputs is None:
            if input is None:
                raise ValueError("infer needs input or inputs")
            inputs = {input_name or self._input_name(model): input}
        kinds = [binary_kind(v) for v in inputs.values()]
        kind = as_ or next((k for k in kinds if k), "list")
        if binary is None:
            binary = any(kinds)
        if binary_output is None:
            binary_output = binary
        path = self._model_path(model, version) + "/infer"
        if raw:
            if len(inputs) != 1:
                raise ValueError("a raw binary request carries exactly one input")
            _, data, _ = _oip_bytes(next(iter(inputs.values())))
            r = self._t.request("POST", path, None, data,
                                {"Content-Type": BINARY_TYPE, "Inference-Header-Content-Length": "0"})
            return _infer_result(r, kind)
        header = {}
        if id is not None:
            header["id"] = id
        params = dict(parameters or {})
        if binary_output:
            params["binary_data_output"] = True
        if params:
            header["parameters"] = params
        header["inputs"] = []
        blobs = []
        for name, value in inputs.items():
            item = {"name": name}
            if binary and binary_kind(value):
                shape, data, dt = _oip_bytes(value)
                item.update(shape=list(shape), datatype=dt, parameters={"binary_data_size": len(data)})
                blobs.append(data)
            elif binary_kind(value):
                shape, flat, dt = _oip_flat(value)
                item.update(shape=list(shape), datatype=dt, data=flat)
            else:
                item.update(shape=list_shape(value), datatype="FP32", data=flatten(value))
            header["inputs"].append(item)
        if outputs is not None:
            header["outputs"] = [{"name": n, "parameters": {"binary_data": bool(binary_output)}}
                                 for n in outputs]
        head = json.dumps(header, default=json_default, allow_nan=False).encode("utf-8")
        if blobs:
            h = {"Content-Type": BINARY_TYPE, "Inference-Header-Content-Length": str(len(head))}
            body = head + b"".join(blobs)
        else:
            h = {"Content-Type": JSON_TYPE}
            body = head
        r = self._t.request("POST", path, None, body, h)
        return _infer_result(r, kind)


_NP_TO_OIP = {"float32": "FP32", "float64": "FP64", "float16": "FP16"}
_OIP_SIZE = {"FP32": 4, "FP64": 8, "FP16": 2}


def _oip_bytes(value):
    """(shape, little-endian bytes, OIP datatype) of a numpy array or Tensor."""
    if is_numpy(value):
        np = _numpy()
        dt = _NP_TO_OIP.get(str(value.dtype), "FP32")
        a = np.ascontiguousarray(value, dtype="<" + {"FP32": "f4", "FP64": "f8", "FP16": "f2"}[dt])
        return tuple(a.shape), a.tobytes(), dt
    shape, data = to_f32_bytes(value)
    return shape, data, "FP32"


def _oip_flat(value):
    if is_numpy(value):
        dt = _NP_TO_OIP.get(str(value.dtype), "FP32")
        return tuple(value.shape), value.ravel().tolist(), dt
    return value.shape, list(value.data), "FP32"


def _infer_result(reply, kind):
    """Splits a reply into its JSON header and the binary outputs that follow it, in order."""
    n = reply.headers.get("inference-header-content-length")
    if n is not None:
        n = int(n)
        doc = json.loads(reply.body[:n].decode("utf-8"))
        rest = memoryview(reply.body)[n:]
    else:
        doc = json.loads(reply.body.decode("utf-8"))
        rest = memoryview(b"")
    offset = 0
    outs = {}
    for o in doc.get("outputs", []):
        shape = tuple(o.get("shape", ()))
        size = (o.get("parameters") or {}).get("binary_data_size")
        dt = o.get("datatype", "FP32")
        if size is not None:
            if offset + size > len(rest):
                raise NormdError(reply.status, None, "reply ends inside the binary data of output %s"
                                 % o.get("name"), request_id=reply.headers.get("x-request-id"))
            blob = bytes(rest[offset:offset + size])
            offset += size
            outs[o["name"]] = _decode_blob(blob, shape, dt, kind)
        else:
            outs[o["name"]] = _decode_data(o.get("data", []), shape, kind)
    return InferResult(doc, outs)


def _decode_blob(blob, shape, dt, kind):
    if dt == "FP32":
        return from_f32_bytes(blob, shape, kind)
    np = _numpy()  # FP64 / FP16 outputs need numpy to widen or narrow
    a = np.frombuffer(blob, dtype={"FP64": "<f8", "FP16": "<f2"}[dt]).astype(np.float32)
    return from_f32_bytes(a.astype("<f4").tobytes(), shape, kind)


def _decode_data(data, shape, kind):
    flat = flatten(data)
    if kind == "numpy":
        np = _numpy()
        return np.asarray(flat, dtype=np.float32).reshape(shape)
    if kind == "tensor":
        return Tensor(shape, flat)
    return nest(flat, shape)
