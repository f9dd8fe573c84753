#!/usr/bin/env python3
"""test_frameworks.py - each framework's own names and defaults (API.md 1.1a), on the real binary.

PyTorch's classes are created with PyTorch's constructor arguments and no convention, and their
numbers are checked against tests/data/torch/expectations.json, which PyTorch itself wrote
(tests/tools/gen_torch_expectations.py; this test needs no torch): inference and train-mode
forwards, running statistics after one and two train-steps, inference after them, and the input
and weight/bias gradients of a train-step. Then PyTorch's constructor rules (422 naming the
argument), the default convention each name selects ("convention_from"), Keras' arguments, and
the definition errors that say how to fix them.

  NORMD=build/normd tests/server/test_frameworks.py

Standard library only. Prints "frameworks: N passed, M failed".
"""
import json
import math
import os
import sys

import harness  # noqa: E402 (tests/server/harness.py)
from harness import check, summary  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTATIONS = os.path.join(HERE, "..", "data", "torch", "expectations.json")
ABS_TOL, REL_TOL = 2e-5, 1e-4  # float32 results against float64 references


# ---- the server ----


class Server(harness.Server):
    """harness.Server whose call() sends any body as JSON and answers (status, parsed JSON)."""

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        status, _, text = self.request(method, path, data, headers)
        return status, (json.loads(text) if text else None)


# ---- helpers ----


def values(t):
    """The numbers of a tensor answer (flat or nested), in row-major order."""
    if isinstance(t, dict):
        return [float(v) for v in t["data"]]
    out = []

    def walk(x):
        if isinstance(x, list):
            for v in x:
                walk(v)
        else:
            out.append(float(x))
    walk(t)
    return out


def close(got, want):
    """got (an answer) equals want (a flat reference) within float32 tolerance."""
    g, w = values(got), values(want)
    if len(g) != len(w):
        return False, "%d values, want %d" % (len(g), len(w))
    worst = max((abs(a - b) - (ABS_TOL + REL_TOL * abs(b)) for a, b in zip(g, w)), default=-1)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(g, w))
           if not abs(a - b) <= ABS_TOL + REL_TOL * abs(b)]
    return not bad, ("first mismatch at %d: %r vs %r" % bad[0]) if bad else "ok (%g)" % worst


def check_close(got, want, what):
    ok, why = close(got, want)
    return check(ok, "%s: %s" % (what, why))


def check_error(answer, status, code, field, word, what):
    st, body = answer
    err = (body or {}).get("error", {})
    check(st == status and err.get("code") == code and err.get("field") == field
          and word in err.get("message", ""),
          "%s: want %d %s field %s mentioning %r, got %d %s" % (what, status, code, field, word,
                                                                 st, json.dumps(body)))


# ---- PyTorch's numbers ----


def definition(case):
    d = {"type": case["type"], "options": case["args"]}
    arrays = {}
    if case["weight"] is not None:
        arrays["weight"] = case["weight"]
    if case["bias"] is not None:
        arrays["bias"] = case["bias"]
    if arrays:
        d["arrays"] = arrays
    if "definition_input" in case:
        d["input"] = case["definition_input"]
    return d


def check_information(srv, name, case):
    st, info = srv.call("GET", "/v1/layers/" + name)
    check(st == 200 and info.get("type_given") == case["type"]
          and info.get("convention") == "pytorch" and info.get("convention_from") == "type",
          "%s: GET shows type_given %s, convention pytorch from type: %s"
          % (name, case["type"], json.dumps(info)[:300]))
    args = info.get("arguments", {})
    for k, v in case["args"].items():
        want = [v] if k == "normalized_shape" and isinstance(v, int) else v
        check(args.get(k) == want, "%s: arguments.%s is %r, want %r" % (name, k, args.get(k), want))


def check_running(srv, name, case, step, answer):
    arrays = answer.get("arrays", {})
    want = case["running"][step] if case["running"] else None
    if want is None:
        check(arrays.get("MovingMean") is None, "%s: no running stats, got %s" % (name, arrays))
        return
    check_close(arrays.get("MovingMean"), want["running_mean"],
                "%s: running_mean after %d train-steps" % (name, step + 1))
    check_close(arrays.get("MovingVariance"), want["running_var"],
                "%s: running_var after %d train-steps" % (name, step + 1))


def run_case(srv, case):
    name = "t_" + case["name"]
    st, body = srv.call("PUT", "/v1/layers/" + name, definition(case))
    if not check(st == 201, "%s: create: %d %s" % (name, st, json.dumps(body))):
        return
    check_information(srv, name, case)
    path = "/v1/layers/%s/" % name
    st, out = srv.call("POST", path + "forward", {"input": case["x1"]})
    check(st == 200, "%s: forward %d %s" % (name, st, out)) and \
        check_close(out["output"], case["eval_output"], name + ": inference output")
    st, out = srv.call("POST", path + "forward", {"input": case["x1"], "mode": "train"})
    check(st == 200, "%s: train forward %d" % (name, st)) and \
        check_close(out["output"], case["train_output"], name + ": train-mode output")
    for step, x in enumerate((case["x1"], case["x2"])):
        # (batch_statistics: a train-step that moves nothing is refused unless it answers them)
        st, out = srv.call("POST", path + "train-step",
                           {"input": x, "return": ["arrays", "batch_statistics"]})
        if check(st == 200, "%s: train-step %d: %d %s" % (name, step + 1, st, out)):
            check_running(srv, name, case, step, out)
    st, out = srv.call("POST", path + "forward", {"input": case["x1"]})
    check(st == 200, "%s: forward after training %d" % (name, st)) and \
        check_close(out["output"], case["eval_after"], name + ": inference after two steps")
    st, out = srv.call("POST", path + "train-step",
                       {"input": case["x1"], "output_gradient": case["output_gradient"],
                        "return": ["input_gradient", "array_gradients"]})
    if not check(st == 200, "%s: gradient step %d %s" % (name, st, out)):
        return
    check_close(out["input_gradient"], case["input_gradient"], name + ": input gradient")
    grads = out.get("array_gradients", {})
    for key, ref in (("Scaling", case["weight_gradient"]), ("Biases", case["bias_gradient"])):
        if ref is None:
            check(grads.get(key) is None, "%s: no %s, got a gradient" % (name, key))
        else:
            check_close(grads.get(key), ref, "%s: %s gradient" % (name, key))


# ---- PyTorch's rules ----


def check_torch_rules(srv):
    put = lambda name, d: srv.call("PUT", "/v1/layers/" + name, d)
    check_error(put("r1", {"type": "BatchNorm2d"}), 422, "invalid_value",
                "options.num_features", "num_features", "BatchNorm2d without num_features")
    check_error(put("r2", {"type": "BatchNorm2d", "options": {"num_features": 3},
                           "input": [4, 2, 2]}),
                422, "invalid_value", "options.num_features", "4 channels",
                "num_features differs from the channels")
    check_error(put("r3", {"type": "BatchNorm2d", "options": {"num_features": 3},
                           "input": [3, 4]}),
                422, "shape_mismatch", "input", "4D", "BatchNorm2d on a rank-2 example")
    check_error(put("r4", {"type": "GroupNorm", "options": {"num_groups": 3, "num_channels": 4}}),
                422, "invalid_value", "options.num_channels",
                "num_channels must be divisible by num_groups", "GroupNorm(3, 4)")
    check_error(put("r5", {"type": "GroupNorm", "options": {"num_channels": 4}}), 422,
                "invalid_value", "options.num_groups", "num_groups", "GroupNorm without num_groups")
    check_error(put("r6", {"type": "LayerNorm", "options": {"normalized_shape": [3]},
                           "input": [2, 4]}),
                422, "invalid_value", "options.normalized_shape", "expected input with shape [*, 3]",
                "LayerNorm's trailing dims")
    check_error(put("r7", {"type": "InstanceNorm1d",
                           "options": {"num_features": 3, "track_running_stats": True,
                                       "momentum": None}}),
                422, "invalid_value", "options.momentum", "needs a number as momentum",
                "InstanceNorm1d(momentum=None, track_running_stats=True)")
    check_error(put("r8", {"type": "BatchNorm2d", "options": {"num_features": 3, "epsilon": 1}}),
                422, "unknown_field", "options.epsilon", "eps", "BatchNorm2d's epsilon spelling")
    check_error(put("r9", {"type": "BatchNorm1d", "options": {"num_features": 0}}), 422,
                "invalid_value", "options.num_features", ">= 1", "num_features 0")
    check_error(put("r10", {"type": "RMSNorm", "options": {"normalized_shape": [2, 0]}}), 422,
                "invalid_value", "options.normalized_shape", ">= 1", "normalized_shape [2, 0]")
    # PyTorch refuses batch statistics over one value per channel; without running stats that
    # is inference too.
    st, _ = put("r11", {"type": "BatchNorm1d", "options": {"num_features": 3,
                                                          "track_running_stats": False}})
    check(st == 201, "BatchNorm1d(3, track_running_stats=False) created: %d" % st)
    check_error(srv.call("POST", "/v1/layers/r11/forward", {"input": [[1, 2, 3]]}), 422,
                "invalid_value", "input", "more than 1 value per channel",
                "inference over one value per channel without running stats")
    st, out = srv.call("POST", "/v1/layers/r11/forward", {"input": [[1, 2, 3], [3, 2, 5]]})
    if check(st == 200, "two examples normalize with their own statistics: %d" % st):
        # (x - mean)/sqrt(var + 1e-5) with the biased variance: +-1/sqrt(1 + 1e-5), or 0
        k = 1 / math.sqrt(1 + 1e-5)
        check_close(out["output"], [-k, 0, -k, k, 0, k], "BatchNorm1d without running stats")
    st, info = srv.call("GET", "/v1/layers/r11")
    check(st == 200 and info["arrays"]["MovingMean"] is None
          and info["arguments"]["track_running_stats"] is False,
          "no MovingMean without running stats: %s" % json.dumps(info.get("arrays")))
    check_instance_rules(srv)


def check_instance_rules(srv):
    """InstanceNorm*d: running statistics only when tracked, and PyTorch's spatial count."""
    put = lambda name, d: srv.call("PUT", "/v1/layers/" + name, d)
    check_error(put("i1", {"type": "InstanceNorm1d", "options": {"num_features": 3},
                           "arrays": {"running_mean": [0, 0, 0]}}),
                422, "invalid_value", "arrays.MovingMean", "track_running_stats true",
                "running_mean given to an InstanceNorm1d that does not track")
    st, info = put("i2", {"type": "InstanceNorm1d", "options": {"num_features": 3}})
    check(st == 201 and "MovingMean" not in srv.call("GET", "/v1/layers/i2")[1]["arrays"],
          "an untracked InstanceNorm1d lists no MovingMean")
    # PyTorch refuses the instance's statistics over one spatial element, in eval too
    check_error(srv.call("POST", "/v1/layers/i2/forward", {"input": [[[1], [2], [3]]]}), 422,
                "invalid_value", "input", "more than 1 spatial element",
                "InstanceNorm1d over one spatial element")
    st, _ = put("i3", {"type": "InstanceNorm1d",
                       "options": {"num_features": 2, "track_running_stats": True},
                       "arrays": {"running_mean": [1, -1], "running_var": [4, 0.25]}})
    check(st == 201, "InstanceNorm1d tracking, with given running stats: %d" % st)
    st, out = srv.call("POST", "/v1/layers/i3/forward", {"input": [[[3], [0]]]})
    if check(st == 200, "a tracked InstanceNorm1d normalizes one spatial element in eval: %d"
             % st):
        check_close(out["output"], [2 / math.sqrt(4 + 1e-5), 1 / math.sqrt(0.25 + 1e-5)],
                    "eval with the running statistics")
    check_error(srv.call("POST", "/v1/layers/i3/forward", {"input": [[[3], [0]]],
                                                         "mode": "train"}),
                422, "invalid_value", "input", "more than 1 spatial element",
                "train mode over one spatial element")
    st, info = srv.call("GET", "/v1/layers/i3")
    check(st == 200 and info["arrays"].get("MovingVariance", {}).get("shape") == [2]
          and info["arguments"].get("track_running_stats") is True,
          "GET lists the running statistics: %s" % json.dumps(info.get("arrays")))
    # The JSON export is canonical: track_running_stats and momentum travel as options.
    st, exported = srv.call("GET", "/v1/layers/i3/export")
    opts = (exported or {}).get("definition", {}).get("options", {})
    check(st == 200 and opts.get("track_running_stats") is True and opts.get("momentum") == 0.1,
          "the JSON export keeps track_running_stats and momentum: %s" % json.dumps(opts))
    st, _ = srv.call("POST", "/v1/layers/i4/import", exported)
    check(st == 201, "the export imports as i4: %d" % st)
    x = {"input": [[[1, 2, 4], [0, -1, 3]], [[2, 2, 5], [1, 0, 0]]], "return": ["arrays"]}
    answers = [srv.call("POST", "/v1/layers/%s/train-step" % n, x) for n in ("i3", "i4")]
    check(answers[0][0] == 200 and answers[0][1]["arrays"] == answers[1][1]["arrays"],
          "the imported copy moves its running statistics as the original: %s" % answers)
    check_error(put("i5", {"type": "InstanceNormalization", "input": [2, 3],
                           "options": {"track_running_stats": True, "momentum": 5}}),
                422, "invalid_value", "options.momentum", "[0, 1]",
                "InstanceNormalization tracking with momentum 5")


# ---- conventions from the names ----


def convention_of(srv, name, d):
    st, body = srv.call("PUT", "/v1/layers/" + name, d)
    if not check(st == 201, "%s: create %d %s" % (name, st, json.dumps(body))):
        return None, None, None
    st, info = srv.call("GET", "/v1/layers/" + name)
    return info.get("convention"), info.get("convention_from"), info


def check_conventions(srv):
    cases = [
        ("c_bn", {"type": "BatchNormalization", "input": [3]}, "wolfram", "default"),
        ("c_bn_keras", {"type": "BatchNormalization", "input": [4, 3],
                        "options": {"center": False}}, "keras", "type"),
        ("c_bn_req", {"type": "BatchNormalization", "input": [3], "convention": "onnx",
                      "options": {"center": False}}, "onnx", "request"),
        ("c_bnl", {"type": "BatchNormalizationLayer", "input": [3]}, "wolfram", "type"),
        ("c_bn2D", {"type": "BatchNorm2D", "input": [3, 2, 2]}, "puzzlelib", "type"),
        ("c_bn2d", {"type": "BatchNorm2d", "options": {"num_features": 3}}, "pytorch", "type"),
        ("c_bn2d_req", {"type": "BatchNorm2d", "convention": "wolfram",
                        "options": {"num_features": 3}}, "wolfram", "request"),
        ("c_ln_keras", {"type": "LayerNormalization", "input": [4],
                        "options": {"gamma_initializer": "ones"}}, "keras", "type"),
        ("c_gn_keras", {"type": "GroupNormalization", "input": [2, 4],
                        "options": {"groups": 2, "beta_regularizer": {"l2": 0.1}}},
         "keras", "type"),
        ("c_in", {"type": "InstanceNormalization", "input": [2, 3],
                  "options": {"center": False}}, "wolfram", "default"),
        ("c_norm", {"type": "NormalizationLayer", "input": [2, 3]}, "wolfram", "type"),
    ]
    for name, d, conv, src in cases:
        got, frm, info = convention_of(srv, name, d)
        check(got == conv and frm == src, "%s: convention %s from %s, want %s from %s"
              % (name, got, frm, conv, src))
    # Keras' defaults follow: channels last and momentum 0.99 for the Keras-argument layer.
    st, info = srv.call("GET", "/v1/layers/c_bn_keras")
    check(info["options"]["momentum"] == 0.99 and info["arrays"]["Scaling"]["shape"] == [3]
          and info["arrays"]["Biases"] is None, "keras defaults: %s" % json.dumps(info)[:300])
    # PuzzleLib's BatchNorm2D keeps its rank rule.
    check_error(srv.call("PUT", "/v1/layers/c_bad2D", {"type": "BatchNorm2D", "input": [3, 4]}),
                422, "shape_mismatch", "input", "BatchNorm2D", "BatchNorm2D on rank 2")


def check_keras_arguments(srv):
    # rms_scaling: x / sqrt(mean(x^2) + epsilon) * gamma, no beta.
    st, body = srv.call("PUT", "/v1/layers/k_rms", {"type": "LayerNormalization", "input": [4],
                                                    "options": {"rms_scaling": True}})
    check(st == 201, "rms_scaling layer: %d %s" % (st, body))
    st, info = srv.call("GET", "/v1/layers/k_rms")
    check(info["convention"] == "keras" and info["arrays"]["Biases"] is None
          and info["expansion"]["method"] == "RMS", "rms_scaling: %s" % json.dumps(info)[:300])
    x = [1.0, -2.0, 3.0, 0.5]
    st, out = srv.call("POST", "/v1/layers/k_rms/forward", {"input": [x]})
    r = math.sqrt(sum(v * v for v in x) / 4 + 1e-3)
    check(st == 200, "rms_scaling forward %d" % st) and \
        check_close(out["output"], [v / r for v in x], "rms_scaling output")
    # synchronized is accepted, changes nothing, and Information says so.
    st, _ = srv.call("PUT", "/v1/layers/k_sync", {"type": "BatchNormalization", "input": [2],
                                                  "options": {"synchronized": True,
                                                              "epsilon": 0.01}})
    st, info = srv.call("GET", "/v1/layers/k_sync")
    check(st == 200 and info["convention"] == "keras" and info["options"].get("synchronized")
          and any("synchronized" in n for n in info.get("notes", [])),
          "synchronized noted: %s" % json.dumps(info)[:400])
    # Keras' names are the canonical options' aliases, each given once.
    check_error(srv.call("PUT", "/v1/layers/k_twice",
                         {"type": "BatchNormalization", "input": [2],
                          "options": {"gamma_initializer": "ones",
                                      "scaling_initializer": "ones"}}),
                422, "invalid_value", "options.scaling_initializer", "twice", "one option twice")


# ---- definition errors that say how to fix ----


def check_hints(srv):
    put = lambda name, d: srv.call("PUT", "/v1/layers/" + name, d)
    check_error(put("h1", {"type": "BatchNormalization", "input": [3], "epsilon": 0.1}), 422,
                "unknown_field", "epsilon", 'options go under "options"',
                "an option at the top level")
    check_error(put("h2", {"type": "BatchNorm2d", "eps": 0.1}), 422, "unknown_field", "eps",
                "options go under", "a PyTorch argument at the top level")
    check_error(put("h3", {"type": "BatchNormalization", "bogus": 1}), 422, "unknown_field",
                "bogus", "unknown field bogus", "an unknown top-level field")
    check_error(put("h4", {"type": "BatchNormalization", "input": [3, "Automatic"]}), 400,
                "invalid_type", "input", "write null", '"Automatic" as a dimension')
    check_error(put("h5", {"type": "BatchNormalization", "input": "Automatic"}), 400,
                "invalid_type", "input", "write null", '"Automatic" as the input')
    check_error(put("h6", {"type": "BatchNormalization", "convention": "pytorch", "input": [3],
                           "options": {"momentum": "Automatic"}}), 400, "invalid_type",
                "options.momentum", "write null", '"Automatic" as momentum')
    check_error(put("h7", {"type": "BatchNorm1d", "options": {"num_features": 3,
                                                              "momentum": "None"}}),
                400, "invalid_type", "options.momentum", "write null", '"None" as momentum')


def main():
    with open(EXPECTATIONS) as f:
        doc = json.load(f)
    srv = Server()
    try:
        for case in doc["cases"]:
            run_case(srv, case)
        check_torch_rules(srv)
        check_conventions(srv)
        check_keras_arguments(srv)
        check_hints(srv)
    finally:
        code = srv.stop()
    check(code == 0, "normd exits 0 on SIGTERM, got %s" % code)
    return summary("frameworks")


if __name__ == "__main__":
    sys.exit(main())
