#!/usr/bin/env python3
"""Generates tests/check_layer_cases.h from the shared conformance cases (API.md's own numbers).

The conformance suite speaks HTTP; tests/check_layer.c replays the layer-level part of it in
process: a definition becomes its type, convention and input plus a function setting its options
on a struct nd_spec, a step becomes the layer or registry call api/ would make, and every
expectation (with the case's tolerances) is pasted as C data. Run once after the cases change;
the tests never read ../shared themselves.

    python3 tests/tools/layer_fixtures.py [CASES_DIR] > tests/check_layer_cases.h

Cases or steps that need the HTTP layer (formats, routes, unknown options, absolute paths) are
left out; what was left out is listed on stderr. Pure Python 3, no numpy.
"""
import base64
import glob
import json
import os
import struct
import sys

PREFIXES = ("bnt-", "bng-", "nrm-", "wd-", "life-", "err-", "conv-", "fmt-")
# Cases about HTTP itself (JSON parsing, routes, names in paths, media types): api/'s to test.
HTTP_ONLY = {"err-malformed-json", "err-post-existing-name", "err-put-name-mismatch",
             "err-unknown-layer", "err-unknown-option", "err-unknown-array-route",
             "err-unsupported-media-type", "err-wrong-json-type", "err-wrong-method",
             "life-health", "life-put-array-binary"}

ARRAYS = {"Scaling": 0, "Biases": 1, "MovingMean": 2, "MovingVariance": 3}
ALIASES = {
    "gamma": "Scaling", "beta": "Biases", "moving_mean": "MovingMean",
    "moving_variance": "MovingVariance", "weight": "Scaling", "bias": "Biases",
    "running_mean": "MovingMean", "running_var": "MovingVariance", "scale": "Scaling",
    "mean": "MovingMean", "var": "MovingVariance",
}
ARRAY_ENUM = ["ND_ARRAY_SCALING", "ND_ARRAY_BIASES", "ND_ARRAY_MOVING_MEAN",
              "ND_ARRAY_MOVING_VARIANCE"]
WANT = {"output": "W_OUT", "input_gradient": "W_DX", "array_gradients": "W_DA", "arrays": "W_ARR",
        "batch_statistics": "W_STAT"}
DEFAULT_TOL = {"rtol": 1e-4, "atol": 1e-5}


class Unsupported(Exception):
    pass


def cstr(s):
    return json.dumps(s)  # a JSON string literal is a valid C string literal for ASCII text


def cnum(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Unsupported("%r where a number belongs" % (v,))
    r = repr(float(v))
    if r in ("nan", "inf", "-inf"):
        raise Unsupported("non-finite number")
    return r


def tensor_shape(v):
    if isinstance(v, dict):
        if "shape" in v and "data" in v:
            return list(v["shape"]), flatten(v["data"])
        if "shape" in v and "b64" in v:  # little-endian FP32 or FP64
            raw = base64.b64decode(v["b64"])
            fmt = "d" if v.get("datatype") == "FP64" else "f"
            n = len(raw) // struct.calcsize(fmt)
            return list(v["shape"]), list(struct.unpack("<%d%s" % (n, fmt), raw))
        raise Unsupported("tensor form %s" % sorted(v))
    shape = []
    t = v
    while isinstance(t, list):
        shape.append(len(t))
        t = t[0] if t else None
    return shape, flatten(v)


def flatten(v):
    if isinstance(v, list):
        out = []
        for x in v:
            out.extend(flatten(x))
        return out
    if v in ("NaN", "Infinity", "-Infinity"):  # API.md 3: non-finite values as strings
        return [float(v.replace("Infinity", "inf"))]
    if isinstance(v, str) or isinstance(v, bool) or v is None:
        raise Unsupported("non-numeric tensor element %r" % (v,))
    return [v]


class Gen:
    def __init__(self):
        self.out = []
        self.ndata = 0
        self.nfun = 0

    def data(self, values):
        name = "fx_d%d" % self.ndata
        self.ndata += 1
        body = ",".join(short(x) for x in values) if values else "0"
        self.out.append("static const float %s[] = {%s};" % (name, body))
        return name

    def tensor(self, v):
        shape, values = tensor_shape(v)
        if len(shape) > 9:
            raise Unsupported("rank above ND_MAX_DIMS")
        dims = ",".join(str(d) for d in shape) or "0"
        return "{%d,{%s},%s,1}" % (len(shape), dims, self.data(values))

    # ---- definitions ----

    def options_fn(self, layer):
        """A function setting what the defaults do not (options, multipliers, disabled arrays,
        seed), or NULL."""
        known = {"name", "type", "convention", "input", "options", "arrays",
                 "learning_rate_multipliers", "seed"}
        extra = set(layer) - known
        if extra:
            raise Unsupported("definition fields %s" % sorted(extra))
        lines = []
        if "seed" in layer:
            lines.append("    s->has_seed = true;")
            lines.append("    s->seed = %dull;" % layer["seed"])
        for k, v in (layer.get("options") or {}).items():
            lines.extend("    " + x for x in self.option(k, v))
        lrm = layer.get("learning_rate_multipliers")
        if isinstance(lrm, (int, float)):
            lines.append("    for (int i = 0; i < ND_ARRAY_COUNT; i++)")
            lines.append("        s->lr_multiplier[i] = %s;" % cnum(lrm))
        elif isinstance(lrm, dict):
            for k, v in lrm.items():
                lines.append("    s->lr_multiplier[%s] = %s;" % (ARRAY_ENUM[array_id(k)], cnum(v)))
        for k, v in (layer.get("arrays") or {}).items():
            if v is None:
                lines.append("    s->enabled[%s] = false;" % ARRAY_ENUM[array_id(k)])
        if not lines:
            return "NULL"
        name = "fx_opt%d" % self.nfun
        self.nfun += 1
        self.out.append("\n".join(
            ["static enum nd_status %s(struct nd_spec *s, struct nd_error *err) {" % name] +
            lines + ["    (void)err;", "    return ND_STATUS_OK;", "}"]))
        return name

    def option(self, k, v):
        if k == "epsilon":
            return ["s->epsilon = %s;" % cnum(v)]
        if k == "momentum":
            if v is None:
                return ["s->momentum_null = true;"]
            return ["s->momentum_null = false;", "s->momentum = %s;" % cnum(v)]
        if k == "interleaving":
            return ["s->interleaving = %s;" % ("true" if v else "false"),
                    "s->interleaving_given = true;"]
        if k == "axis":
            axes = [v] if isinstance(v, int) else v
            return ["s->naxes = %d;" % len(axes)] + [
                "s->axes[%d] = %d;" % (i, a) for i, a in enumerate(axes)]
        if k == "moving_variance":
            return parsed("nd_variance_estimator_parse", v, "s->moving_variance", k)
        if k == "method":
            return parsed("nd_method_parse", v, "s->method", k)
        if k in ("aggregation_levels", "scaling_levels"):
            field = "aggregation" if k == "aggregation_levels" else "scaling"
            if isinstance(v, str):
                return parsed("nd_levels_parse", v, "s->" + field, k)
            levels = [v] if isinstance(v, int) else v
            return ["s->%s = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = %d, "
                    ".level = {%s}};" % (field, len(levels), ", ".join(map(str, levels)))]
        if k == "group_number":
            if v is None:
                return ["s->ngroup = 0;"]
            g = [v] if isinstance(v, int) else v
            return ["s->ngroup = %d;" % len(g)] + [
                "s->group_number[%d] = %d;" % (i, x) for i, x in enumerate(g)]
        if k == "groups":
            return ["s->groups = %d;" % v]
        if k in ("unbiased", "inplace", "trainable"):
            return ["s->%s = %s;" % (k, "true" if v else "false")]
        if k in ("scaling_regularizer", "biases_regularizer"):
            i = 0 if k.startswith("scaling") else 1
            return ["s->regularizer[%d] = (struct nd_regularizer){%s, %s};" %
                    (i, cnum(v.get("l1", 0)), cnum(v.get("l2", 0)))]
        if k in ("scaling_constraint", "biases_constraint"):
            i = 0 if k.startswith("scaling") else 1
            kinds = {"non_neg": "ND_CONSTRAINT_NON_NEG", "max_norm": "ND_CONSTRAINT_MAX_NORM",
                     "unit_norm": "ND_CONSTRAINT_UNIT_NORM",
                     "min_max_norm": "ND_CONSTRAINT_MIN_MAX_NORM"}
            out = ["s->constraint[%d] = nd_constraint_default(%s);" % (i, kinds[v["type"]])]
            for f in ("min_value", "max_value", "rate"):
                if f in v:
                    out.append("s->constraint[%d].%s = %s;" % (i, f, cnum(v[f])))
            return out
        raise Unsupported("option %s" % k)

    def definition(self, layer, prefix):
        opts = self.options_fn(layer)
        values = ["{0}"] * 4
        shared = ["NULL"] * 4
        for k, v in (layer.get("arrays") or {}).items():
            i = array_id(k)
            if v is None:
                continue
            if isinstance(v, dict) and "shared" in v:
                shared[i] = cstr(v["shared"].replace("{{prefix}}", prefix))
            else:
                values[i] = self.tensor(v)
        inp = "ND_RANK_UNKNOWN, {0}"
        if "input" in layer:
            dims = layer["input"]
            dims = [dims] if isinstance(dims, int) else dims
            inp = "%d, {%s}" % (len(dims), ",".join(
                "ND_DIM_AUTO" if d is None else str(d) for d in dims) or "0")
        out = "{%s, %s, {%s}, %s" % (cstr(layer.get("type", "BatchNormalization")),
                                     cstr(layer.get("convention", "wolfram")), inp, opts)
        if any(v != "{0}" for v in values):
            out += ", .value = {%s}" % ", ".join(values)
        if any(v != "NULL" for v in shared):
            out += ", .shared = {%s}" % ", ".join(shared)
        return out + "}"

    # ---- steps ----

    def step(self, case, step, prefix):
        method = step.get("method", "POST" if "body" in step else "GET")
        path = step.get("path", "")
        body = step.get("body") or {}
        if path.startswith("/") or "raw_body" in step or "binary" in step or "query" in step:
            raise Unsupported("HTTP-only step %s %s" % (method, path))
        if "headers" in step or "expect_headers" in step or "expect_content_type" in step:
            raise Unsupported("headers")
        f = {}
        if step.get("layer", "main") != "main":
            f["layer"] = cstr(step["layer"])
        status = step.get("expect_status")
        if isinstance(status, list):
            status = status[0]
        if status:
            f["http"] = str(status)
        if "expect_error_code" in step:
            f["error_code"] = cstr(step["expect_error_code"])
        expects = []
        if path == "" and method in ("PUT", "POST"):
            f["op"] = "FX_DEFINE"
            if method == "POST":
                f["create_only"] = "1"
            f["def"] = "&(const struct fx_def)" + self.definition(body, prefix)
        elif path == "" and method == "GET":
            f["op"] = "FX_INFO"
        elif path == "" and method == "DELETE":
            f["op"] = "FX_DELETE"
        elif path == "forward":
            if set(body) - {"input", "inputs", "mode", "batch", "output_format"}:
                raise Unsupported("forward fields %s" % sorted(body))
            f["op"] = "FX_FORWARD"
            if body.get("mode") == "train":
                f["train_mode"] = "1"
            if "batch" in body:
                f["batch"] = "FX_BATCH" if body["batch"] else "FX_EXAMPLE"
            if "inputs" in body:  # one forward per example
                outs = (step.get("expect") or {}).get("outputs")
                steps = []
                for i, x in enumerate(body["inputs"]):
                    g = dict(f)
                    g["batch"] = "FX_EXAMPLE"
                    g["input"] = self.tensor(x)
                    exp = {"output": outs[i]} if outs is not None else {}
                    steps.append(self.finish(g, case, step, exp))
                return steps
            f["input"] = self.tensor(body["input"])
        elif path == "train-step":
            known = {"input", "output_gradient", "target", "loss", "optimizer", "return"}
            if set(body) - known:
                raise Unsupported("train-step fields %s" % sorted(body))
            f["op"] = "FX_TRAIN"
            f["input"] = self.tensor(body["input"])
            if "output_gradient" in body:
                f["output_grad"] = self.tensor(body["output_gradient"])
            if "target" in body:
                if body.get("loss", "mean_squared") != "mean_squared":
                    raise Unsupported("loss")
                f["target"] = self.tensor(body["target"])
            f["optimizer"] = optimizer(body.get("optimizer") or {})
            ret = body.get("return", ["output"])
            f["want"] = "|".join(WANT[r] for r in ret if r in WANT) or "0"
        elif path == "extract":
            f["op"] = "FX_EXTRACT"
        elif path == "initialize":
            f["op"] = "FX_INITIALIZE"
            init = ["false", "{0}", "false", "0", "false"]
            if "input" in body:
                inp = body["input"]
                inp = [inp] if isinstance(inp, int) else inp
                dims = ", ".join("ND_DIM_AUTO" if d is None else str(d) for d in inp) or "0"
                init[0:2] = ["true", "{%d, {%s}}" % (len(inp), dims)]
            if "seed" in body:
                init[2:4] = ["true", "%dull" % body["seed"]]
            init[4] = "true" if body.get("reinitialize") else "false"
            f["init"] = "{%s}" % ", ".join(init)
        elif path.startswith("arrays/"):
            f["array"] = ARRAY_ENUM[array_id(path[len("arrays/"):])]
            if method == "GET":
                f["op"] = "FX_GET_ARRAY"
            elif method == "PUT":
                f["op"] = "FX_PUT_ARRAY"
                f["input"] = self.tensor(body["array"])
            else:
                raise Unsupported("%s %s" % (method, path))
        else:
            raise Unsupported("%s %s" % (method, path))
        return [self.finish(f, case, step, step.get("expect") or {})]

    def finish(self, f, case, step, expect):
        items = []
        for p, v in expect.items():
            tol = dict(DEFAULT_TOL)
            tol.update(case.get("tolerance") or {})
            tol.update(step.get("tolerance") or {})
            best = None
            for prefix, t in (step.get("tolerances") or {}).items():
                if p == prefix or p.startswith(prefix + ".") or p.startswith(prefix + "["):
                    if best is None or len(prefix) > len(best[0]):
                        best = (prefix, t)
            if best:
                tol.update(best[1])
            if isinstance(v, bool):
                item = ".text = %s" % cstr("true" if v else "false")
            elif isinstance(v, str):
                item = ".text = %s" % cstr(v)
            elif isinstance(v, dict) and set(v) <= {"$form", "$value"} and "$value" in v:
                item = ".value = %s" % self.tensor(v["$value"])  # the form is api/'s
            elif isinstance(v, dict):
                raise Unsupported("matcher at %s" % p)
            else:
                item = ".value = %s" % self.tensor(v)
            if tol != DEFAULT_TOL:
                item += ", .rtol = %s, .atol = %s" % (cnum(tol["rtol"]), cnum(tol["atol"]))
            items.append("{%s, %s}" % (cstr(p), item))
        if items:
            name = "fx_e%d" % self.nfun
            self.nfun += 1
            self.out.append("static const struct fx_expect %s[] = {\n    %s};" %
                            (name, ",\n    ".join(items)))
            f["expect"] = name
            f["nexpect"] = str(len(items))
        order = sorted(f.items(), key=lambda kv: kv[0] != "op")  # op first, then as set
        return "{" + ", ".join(".%s = %s" % kv for kv in order) + "}"


def short(x):
    """The shortest decimal that reads back as the same float32 (the tests compare in float)."""
    x = float(x)
    if x != x:
        return "NAN"
    if x in (float("inf"), float("-inf")):
        return "INFINITY" if x > 0 else "-INFINITY"
    want = struct.unpack("f", struct.pack("f", x))[0]
    for digits in range(1, 10):
        t = "%.*g" % (digits, x)
        if struct.unpack("f", struct.pack("f", float(t)))[0] == want:
            break
    if "e" not in t and "." not in t:
        return t
    return t.replace("0.", ".", 1) if t.startswith(("0.", "-0.")) else t


def parsed(parser, text, target, option):
    """C lines parsing text into target with core's parser, naming the option on failure."""
    return ["if (%s(%s, &%s, err)) {" % (parser, cstr(text), target),
            "    nd_error_prefix_field(err, \"options.%s\");" % option,
            "    return ND_STATUS_INVALID_VALUE;",
            "}"]


def array_id(name):
    name = ALIASES.get(name, name)
    if name not in ARRAYS:
        raise Unsupported("array %s" % name)
    return ARRAYS[name]


def optimizer(o):
    kind = o.get("type", "sgd")
    if kind == "sgd":
        return "FX_SGD(%s, %s, %s)" % (
            cnum(o.get("learning_rate", 0.01)), cnum(o.get("momentum", 0.0)),
            "true" if o.get("nesterov") else "false")
    if kind == "adam":
        return "FX_ADAM(%s, %s, %s, %s)" % (
            cnum(o.get("learning_rate", 0.001)), cnum(o.get("beta_1", 0.9)),
            cnum(o.get("beta_2", 0.999)), cnum(o.get("epsilon", 1e-7)))
    raise Unsupported("optimizer %s" % kind)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    cases_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "..", "..", "shared", "conformance", "cases")
    g = Gen()
    cases = []
    for path in sorted(glob.glob(os.path.join(cases_dir, "*.json"))):
        base = os.path.basename(path)
        if not base.startswith(PREFIXES) or base[:-len(".json")] in HTTP_ONLY:
            continue
        loaded = json.load(open(path))
        for case in loaded if isinstance(loaded, list) else [loaded]:
            mark = len(g.out)
            try:
                steps = []
                layers = [("main", case.get("layer"))] + sorted(
                    (case.get("extra_layers") or {}).items())
                for key, layer in layers:
                    if layer is not None:
                        f = {"op": "FX_DEFINE"}
                        if key != "main":
                            f["layer"] = cstr(key)
                        f["def"] = "&(const struct fx_def)" + g.definition(layer, "")
                        steps.append(g.finish(f, case, {}, {}))
                skipped = []
                for i, step in enumerate(case["steps"]):
                    try:
                        steps.extend(g.step(case, step, ""))
                    except Unsupported as e:
                        skipped.append("step %d: %s" % (i + 1, e))
                if skipped:
                    sys.stderr.write("%s: skipped %s\n" % (case["id"], "; ".join(skipped)))
                if all(x.startswith("{.op = FX_DEFINE") for x in steps):
                    raise Unsupported("no step left")
                name = "fx_s%d" % g.nfun
                g.nfun += 1
                g.out.append("static const struct fx_step %s[] = {\n    %s};" %
                             (name, ",\n    ".join(steps)))
                cases.append("{%s, %s, %d}" % (cstr(case["id"]), name, len(steps)))
            except Unsupported as e:
                del g.out[mark:]
                sys.stderr.write("%s: left out (%s)\n" % (case["id"], e))
    print("// check_layer_cases.h - GENERATED by tests/tools/layer_fixtures.py from the shared")
    print("// conformance cases (bnt-, bng-, nrm-, wd-, life-, err-, conv-, fmt-); do not edit.")
    print("// Included once, by tests/check_layer.c, which defines the fx_ structs.")
    print("// clang-format off")
    print("\n".join(g.out))
    print("static const struct fx_case fx_cases[] = {\n    %s};" % ",\n    ".join(cases))
    print("#define FX_NCASES %d" % len(cases))
    print("// clang-format on")


if __name__ == "__main__":
    main()
