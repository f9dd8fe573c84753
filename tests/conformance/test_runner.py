#!/usr/bin/env python3
"""Self-test of runner.py's comparison logic, with no server: tensor forms, tolerances, matchers,
paths, substitution, request building and response checks on small synthetic inputs. Every
matcher has at least one comparison that must fail, so a matcher that accepts anything is caught.

    python3 tests/conformance/test_runner.py
"""
import base64
import math
import os
import struct
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402  (the module under test sits beside this file)
from runner import MISSING, Mismatch, Response, Tolerances  # noqa: E402

TOLS = Tolerances([runner.DEFAULT_TOL], {}, 1.0)


def b64(values, datatype="FP32"):
    """Base64 of little-endian values, as a server writes the b64 tensor form."""
    code = runner.DTYPES[datatype]
    return base64.b64encode(struct.pack("<%d%s" % (len(values), code), *values)).decode()


class CompareCase(unittest.TestCase):
    """Helpers: assert that a comparison passes, or fails with a message naming something."""

    def ok(self, got, want, tols=TOLS, path="x"):
        runner.compare(got, want, path, tols)

    def bad(self, got, want, needle="", tols=TOLS, path="x"):
        with self.assertRaises(Mismatch) as ctx:
            runner.compare(got, want, path, tols)
        self.assertIn(needle, str(ctx.exception))
        return str(ctx.exception)


class TestTensorForms(CompareCase):
    """Any tensor form API.md allows is converted, then shape and elements are compared."""

    def test_nested(self):
        self.ok([[1.0, 2.0], [3.0, 4.0]], [[1, 2], [3, 4]])

    def test_flat(self):
        self.ok({"shape": [2, 2], "data": [1, 2, 3, 4]}, [[1, 2], [3, 4]])

    def test_b64_fp32_and_fp64(self):
        for datatype in ("FP32", "FP64"):
            got = {"shape": [3], "datatype": datatype, "b64": b64([0.1, -2.5, 3.0], datatype)}
            self.ok(got, [0.1, -2.5, 3.0])

    def test_b64_byte_count_must_fit_shape(self):
        self.bad({"shape": [4], "datatype": "FP32", "b64": b64([1.0, 2.0, 3.0])}, [1, 2, 3, 4], "bytes")

    def test_b64_unknown_datatype(self):
        self.bad({"shape": [1], "datatype": "INT8", "b64": "AA=="}, [0], "datatype")

    def test_flat_data_count_must_fit_shape(self):
        self.bad({"shape": [2, 2], "data": [1, 2, 3]}, [[1, 2], [3, 4]], "shape")

    def test_shape_mismatch_with_same_values(self):
        self.bad({"shape": [4], "data": [1, 2, 3, 4]}, [[1, 2], [3, 4]], "shape [4]")

    def test_ragged_response_is_not_a_tensor(self):
        self.bad([[1, 2], [3]], [[1, 2], [3, 4]], "ragged")

    def test_scalar_is_not_a_vector(self):
        self.bad(1.0, [1.0], "shape")

    def test_element_report_names_index_values_and_tolerance(self):
        message = self.bad([[1.0, 2.0], [3.0, 5.0]], [[1, 2], [3, 4]])
        for part in ("x[1][1]", "got 5", "expected 4", "max abs err 1", "rtol 0.0001", "atol 1e-05"):
            self.assertIn(part, message)

    def test_special_strings_in_responses(self):
        self.ok(["NaN", "Infinity", "-Infinity", 1.0], ["NaN", "Infinity", "-Infinity", 1])
        self.ok({"shape": [2], "data": ["NaN", 2]}, ["NaN", 2])

    def test_nan_matches_only_nan(self):
        self.bad([1.0], ["NaN"], "expected NaN")
        self.bad(["NaN"], [1.0], "got NaN")

    def test_infinity_matches_only_same_sign(self):
        self.bad(["-Infinity"], ["Infinity"])
        self.bad([1e308], ["Infinity"])
        self.bad(["Infinity"], [1e308])

    def test_decoded_nan_from_b64(self):
        self.ok({"shape": [1], "datatype": "FP32", "b64": b64([math.nan])}, ["NaN"])

    def test_empty_tensor(self):
        self.ok([], [])
        self.bad([1.0], [], "shape")


class TestTolerance(CompareCase):
    """|got - expected| <= atol + rtol*|expected|, with per-path and per-matcher overrides."""

    def test_rule_boundary(self):
        tols = Tolerances([{"rtol": 0.1, "atol": 0.5}], {}, 1.0)
        self.ok(11.5, 10, tols)  # exactly atol + rtol*|10| = 1.5 away
        self.bad(11.6, 10, "abs err", tols)
        self.ok([-11.5], [-10], tols)

    def test_rtol_uses_expected_not_got(self):
        tols = Tolerances([{"rtol": 0.5, "atol": 0.0}], {}, 1.0)
        self.ok(0.6, 1.0, tols)  # 0.4 away, allowed 0.5*|1.0|
        self.bad(1.0, 0.6, "abs err", tols)  # 0.4 away, allowed 0.5*|0.6|

    def test_default_tolerance(self):
        self.ok(1.0 + 1e-4, 1.0)
        self.bad(1.0 + 1.2e-4, 1.0)

    def test_layers_override_key_by_key(self):
        tols = Tolerances([runner.DEFAULT_TOL, {"rtol": 1e-3}, {"atol": 1e-2}], {}, 1.0)
        self.assertEqual(tols.at("output"), runner.Tol(1e-3, 1e-2))

    def test_longest_prefix_on_path_boundaries(self):
        prefixes = {"arrays": {"atol": 1.0}, "arrays.Scaling": {"atol": 2.0}, "out": {"atol": 3.0}}
        tols = Tolerances([runner.DEFAULT_TOL], prefixes, 1.0)
        self.assertEqual(tols.at("arrays.Scaling").atol, 2.0)
        self.assertEqual(tols.at("arrays.Biases").atol, 1.0)
        self.assertEqual(tols.at("arrays").atol, 1.0)
        self.assertEqual(tols.at("output").atol, 1e-5)  # "out" is not a path prefix of "output"
        self.assertEqual(tols.at("out[2]").atol, 3.0)

    def test_prefix_applies_inside_object_expectations(self):
        tols = Tolerances([runner.DEFAULT_TOL], {"array_gradients": {"rtol": 0, "atol": 0.1}}, 1.0)
        self.ok({"array_gradients": {"Scaling": [1.05]}}, {"array_gradients": {"Scaling": [1]}},
                tols, path="$")
        self.bad({"arrays": {"Scaling": [1.05]}}, {"arrays": {"Scaling": [1]}}, "arrays.Scaling",
                 tols, path="$")

    def test_scale_multiplies_every_tolerance(self):
        tols = Tolerances([runner.DEFAULT_TOL], {"a": {"rtol": 0, "atol": 1}}, 2.0)
        self.assertEqual(tols.at("b"), runner.Tol(2e-4, 2e-5))
        self.assertEqual(tols.at("a").atol, 2.0)
        self.assertEqual(tols.with_override({"atol": 3}).at("a").atol, 6.0)


class TestValues(CompareCase):
    """Numbers, objects, lists and other JSON values."""

    def test_number_accepts_one_element_tensor(self):
        self.ok([0.001], 0.001)
        self.ok({"shape": [1, 1], "data": [0.001]}, 0.001)
        self.ok("NaN", "NaN")
        self.bad([1.0, 2.0], 1.0, "expected the number")
        self.bad("1.0", 1.0, "expected the number")

    def test_boolean_is_not_a_number(self):
        self.bad(True, 1)
        self.bad(1, True)

    def test_strings_booleans_null_must_be_equal(self):
        self.ok("ok", "ok")
        self.ok(None, None)
        self.ok(False, False)
        self.bad("OK", "ok")
        self.bad(0, None)
        self.bad(None, False)

    def test_object_key_by_key_ignores_extra_keys(self):
        self.ok({"a": 1, "b": [1, 2], "extra": "x"}, {"a": 1, "b": [1, 2]})
        self.bad({"a": 1}, {"a": 1, "b": 2}, "x.b: missing")
        self.bad([1], {"a": 1}, "expected an object")

    def test_non_numeric_list_item_by_item(self):
        self.ok(["Scaling", 1.0], ["Scaling", 1])
        self.bad(["Scaling"], ["Scaling", "Biases"])
        self.bad(["Biases", "Scaling"], ["Scaling", "Biases"], "x[0]")

    def test_ragged_expectation_compared_item_by_item(self):
        self.ok([[1, 2], [3.0]], [[1, 2], [3]])
        self.bad([[1, 2], [3.5]], [[1, 2], [3]], "x[1]")

    def test_missing_value(self):
        self.bad(MISSING, 1, "missing")


class TestMatchers(CompareCase):
    """Each matcher passes on a fitting value and fails on at least one that does not fit."""

    def test_form(self):
        flat = {"shape": [2], "data": [1, 2]}
        packed = {"shape": [2], "datatype": "FP32", "b64": b64([1, 2])}
        self.ok([1, 2], {"$form": "nested", "$value": [1, 2]})
        self.ok(flat, {"$form": "flat", "$value": [1, 2]})
        self.ok(packed, {"$form": "b64", "$value": [1, 2]})
        self.bad(flat, {"$form": "nested", "$value": [1, 2]}, "nested form")
        self.bad([1, 2], {"$form": "b64"}, "b64 form")
        self.bad(packed, {"$form": "b64", "$value": [1, 3]}, "x[1]")
        self.bad({"shape": [3], "datatype": "FP32", "b64": b64([1, 2])}, {"$form": "b64"}, "invalid")
        self.bad([1, 2], {"$form": "dense"}, "unknown $form")

    def test_shape(self):
        self.ok({"shape": [2, 1], "data": [1, 2]}, {"$shape": [2, 1]})
        self.bad([[1, 2]], {"$shape": [2, 1]}, "shape [1, 2]")
        self.bad("text", {"$shape": [1]}, "expected a tensor")

    def test_contains(self):
        self.ok("GET, POST", {"$contains": "POST"})
        self.ok("get, post", {"$contains": "POST"})
        self.bad("GET, PUT", {"$contains": "POST"}, "containing")
        self.bad(["POST"], {"$contains": "POST"}, "containing")

    def test_type(self):
        for value, name in (("s", "string"), (1.5, "number"), (2, "number"), ({}, "object"),
                            ([], "array"), (False, "boolean")):
            self.ok(value, {"$type": name})
        self.bad(True, {"$type": "number"}, "expected a number")
        self.bad("1", {"$type": "number"})
        self.bad(1, {"$type": "boolean"})
        self.bad([], {"$type": "object"})
        self.bad(None, {"$type": "string"})
        self.bad(1, {"$type": "integer"}, "unknown $type")

    def test_one_of(self):
        self.ok(400, {"$one_of": [400, 422]})
        self.ok([1.00001], {"$one_of": ["x", [1]]})
        self.ok({"shape": [1], "data": [2]}, {"$one_of": [{"$form": "nested"}, {"$form": "flat"}]})
        self.bad(404, {"$one_of": [400, 422]}, "one of")
        self.bad(MISSING, {"$one_of": [1]}, "missing")

    def test_absent(self):
        self.ok(MISSING, {"$absent": True})
        self.ok({"a": 1}, {"b": {"$absent": True}})
        self.bad(None, {"$absent": True}, "expected it absent")
        self.bad({"b": 0}, {"b": {"$absent": True}}, "x.b")
        self.ok(0, {"$absent": False})
        self.bad(MISSING, {"$absent": False}, "missing")

    def test_tol(self):
        self.ok([1.4], {"$tol": {"rtol": 0, "atol": 0.5}, "$value": [1]})
        self.bad([1.6], {"$tol": {"rtol": 0, "atol": 0.5}, "$value": [1]}, "atol 0.5")
        self.bad(1.001, {"$tol": {"atol": 0}, "$value": 1})  # rtol stays 1e-4
        tols = Tolerances([runner.DEFAULT_TOL], {"x": {"atol": 9}}, 1.0)
        self.bad(2.0, {"$tol": {"atol": 0.1}, "$value": 1}, "atol 0.1", tols)  # $tol wins

    def test_value_alone_and_combinations(self):
        self.ok(1, {"$value": 1})
        self.bad(2, {"$value": 1})
        self.bad("abc", {"$type": "string", "$contains": "z"}, "containing")

    def test_unknown_matcher_is_reported(self):
        self.bad(1, {"$equals": 1}, "unknown matcher key $equals")


class TestPaths(unittest.TestCase):
    """Dotted paths with [i] indices; "$" is the whole body."""

    DOC = {"output": [[1, 2]], "arrays": {"Moving.Mean": 0, "Scaling": [3]},
           "outputs": [{"a": 1}, {"a": [4, 5]}], "error": {"field": "options.epsilon"}}

    def test_lookup(self):
        self.assertEqual(runner.lookup(self.DOC, "arrays.Scaling"), [3])
        self.assertEqual(runner.lookup(self.DOC, "outputs[1].a[0]"), 4)
        self.assertEqual(runner.lookup(self.DOC, "output[0][1]"), 2)
        self.assertEqual(runner.lookup(self.DOC, "error.field"), "options.epsilon")
        self.assertIs(runner.lookup(self.DOC, "$"), self.DOC)
        self.assertEqual(runner.lookup(self.DOC, "$.outputs[0].a"), 1)

    def test_missing_paths(self):
        for path in ("nope", "outputs[2]", "outputs.a", "arrays[0]", "arrays.Scaling.x"):
            self.assertIs(runner.lookup(self.DOC, path), MISSING, path)
        self.assertIs(runner.lookup(MISSING, "$"), MISSING)

    def test_bad_path_is_a_mismatch(self):
        for path in ("a..b", "a[x]", "a[1"):
            with self.assertRaises(Mismatch):
                runner.parse_path(path)

    def test_index_suffix(self):
        self.assertEqual(runner.index_suffix([2, 3], 5), "[1][2]")
        self.assertEqual(runner.index_suffix([], 0), "")


class TestSubstitution(unittest.TestCase):
    """{{name}}, {{name:KEY}} and {{prefix}} in every string (keys too); names PREFIX + id."""

    CASE = {"id": "wd-shared", "extra_layers": {"b": None}, "steps": []}

    def test_layer_names(self):
        names = runner.layer_names(self.CASE, "ctab-")
        self.assertEqual(names, {"main": "ctab-wd-shared", "b": "ctab-wd-shared-b"})

    def test_substitute_everywhere(self):
        names = runner.layer_names(self.CASE, "ctab-")
        value = {"path": "/v1/layers/{{name}}", "{{name:b}}": ["{{prefix}}g", 1, None],
                 "h": {"Location": {"$contains": "{{name:b}}/x"}}}
        self.assertEqual(runner.substitute(value, names, "ctab-"), {
            "path": "/v1/layers/ctab-wd-shared", "ctab-wd-shared-b": ["ctab-g", 1, None],
            "h": {"Location": {"$contains": "ctab-wd-shared-b/x"}}})

    def test_unknown_key_and_other_braces(self):
        names = runner.layer_names(self.CASE, "p-")
        with self.assertRaises(Mismatch):
            runner.substitute("{{name:c}}", names, "p-")
        self.assertEqual(runner.substitute("{{other}} {x}", names, "p-"), "{{other}} {x}")


class TestRequests(unittest.TestCase):
    """Steps become requests: method defaults, paths, layer selection, bodies, headers, query."""

    NAMES = {"main": "p-c", "b": "p-c-b"}

    def build(self, step):
        return runner.build_request(step, self.NAMES)

    def test_method_defaults(self):
        self.assertEqual(self.build({"path": ""}).method, "GET")
        self.assertEqual(self.build({"path": "forward", "body": {}}).method, "POST")
        self.assertEqual(self.build({"path": "", "method": "delete"}).method, "DELETE")

    def test_paths_and_layer(self):
        self.assertEqual(self.build({"path": ""}).path, "/v1/layers/p-c")
        self.assertEqual(self.build({"path": "arrays/Scaling", "layer": "b"}).path,
                         "/v1/layers/p-c-b/arrays/Scaling")
        self.assertEqual(self.build({"path": "/healthz"}).path, "/healthz")
        self.assertEqual(self.build({"path": "forward", "query": {"mode": "train", "k": True}}).path,
                         "/v1/layers/p-c/forward?mode=train&k=true")
        with self.assertRaises(Mismatch):
            self.build({"path": "", "layer": "zz"})

    def test_json_and_raw_bodies(self):
        request = self.build({"path": "forward", "body": {"input": [1]}, "headers": {"Accept": "x"}})
        self.assertEqual(request.body, b'{"input": [1]}')
        self.assertEqual(request.headers, {"Content-Type": "application/json", "Accept": "x"})
        request = self.build({"path": "f", "raw_body": "{\"a\": [1", "content_type": "text/plain"})
        self.assertEqual((request.body, request.headers), (b'{"a": [1', {"Content-Type": "text/plain"}))

    def test_binary_body_is_little_endian_fp32(self):
        request = self.build({"path": "forward", "binary": {"shape": [2, 2], "data": [[1, 2], [3, "NaN"]]}})
        self.assertEqual(request.headers, {"Content-Type": "application/octet-stream",
                                           "X-Tensor-Shape": "2,2"})
        self.assertEqual(request.body[:12], struct.pack("<3f", 1, 2, 3))
        self.assertTrue(math.isnan(struct.unpack("<f", request.body[12:])[0]))
        flat = self.build({"path": "f", "binary": {"shape": [3], "data": [0.5, 1, 2], "datatype": "FP32"}})
        self.assertEqual(flat.body, struct.pack("<3f", 0.5, 1, 2))

    def test_bad_bodies(self):
        with self.assertRaises(Mismatch):
            self.build({"path": "f", "binary": {"shape": [3], "data": [1, 2]}})
        with self.assertRaises(Mismatch):
            self.build({"path": "f", "body": {}, "raw_body": "x"})


def response(status=200, body=b"", **headers):
    """A Response with lower-case header names, as Client.request returns."""
    return Response(status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, body)


class TestResponses(unittest.TestCase):
    """Status, media type, headers, error body and binary decoding."""

    def check(self, step, resp):
        runner.check_response(step, resp, TOLS)

    def fails(self, step, resp, needle):
        with self.assertRaises(Mismatch) as ctx:
            self.check(step, resp)
        self.assertIn(needle, str(ctx.exception))

    def test_status(self):
        self.check({}, response(204))
        self.fails({}, response(302), "expected 2xx")
        self.check({"expect_status": [400, 422]}, response(422, b'{"error": {"status": 422, '
                                                                b'"code": "c", "message": "m"}}'))
        self.fails({"expect_status": 201}, response(200), "expected 201")

    def test_error_body_required_on_every_error(self):
        good = b'{"error": {"status": 404, "code": "not_found", "message": "no layer"}}'
        self.check({"expect_status": 404}, response(404, good))
        for body, needle in ((b"", "no {"), (b"not json", "not JSON"),
                             (b'{"error": {"status": 400, "code": "c", "message": "m"}}', "error.status"),
                             (b'{"error": {"status": 404, "code": 1, "message": "m"}}', "error.code"),
                             (b'{"error": {"status": 404, "code": "c"}}', "error.message")):
            self.fails({"expect_status": 404}, response(404, body), needle)

    def test_error_code_and_names(self):
        body = (b'{"error": {"status": 422, "code": "unknown_field", "message": "Unknown option",'
                b' "field": "options.foo"}}')
        step = {"expect_status": 422, "expect_error_code": ["invalid_value", "unknown_field"],
                "expect_error_names": ["FOO", "option"]}
        self.check(step, response(422, body))
        self.fails(dict(step, expect_error_code="invalid_value"), response(422, body), "error.code")
        self.fails(dict(step, expect_error_names="bar"), response(422, body), "names 'bar'")
        self.fails({"expect_error_code": "x"}, response(200, b"{}"), "no {")

    def test_headers(self):
        resp = response(405, b'{"error": {"status": 405, "code": "c", "message": "m"}}',
                        Allow="POST, OPTIONS", X_Tensor_Shape="3, 3,2")
        self.check({"expect_status": 405, "expect_headers": {
            "allow": {"$contains": "POST"}, "X-Tensor-Shape": "3,3,2", "ETag": {"$absent": True}}}, resp)
        self.fails({"expect_status": 405, "expect_headers": {"Allow": "POST"}}, resp, "header Allow")
        self.fails({"expect_status": 405, "expect_headers": {"X-Request-Id": {"$type": "string"}}},
                   resp, "missing")
        self.fails({"expect_status": 405, "expect_headers": {"Allow": {"$absent": True}}}, resp, "absent")

    def test_content_type(self):
        resp = response(200, b"{}", Content_Type="Application/JSON; charset=utf-8")
        self.check({"expect_content_type": "application/json"}, resp)
        self.fails({"expect_content_type": "application/octet-stream"}, resp, "Content-Type")

    def test_binary_response_decoded_at_root(self):
        body = struct.pack("<4f", 1, 2, 3, 4)
        resp = response(200, body, Content_Type="application/octet-stream", X_Tensor_Shape="2,2")
        self.check({"expect": {"$": [[1, 2], [3, 4]]}}, resp)
        self.fails({"expect": {"$": [[1, 2], [3, 5]]}}, resp, "$[1][1]")
        self.fails({"expect": {"$": [1, 2, 3, 4]}}, resp, "shape")
        short = response(200, body[:8], Content_Type="application/octet-stream", X_Tensor_Shape="2,2")
        self.fails({"expect": {"$": [[1, 2], [3, 4]]}}, short, "bytes")
        no_shape = response(200, body, Content_Type="application/octet-stream")
        self.fails({"expect": {"$": [1, 2, 3, 4]}}, no_shape, "X-Tensor-Shape")

    def test_json_expectations(self):
        resp = response(200, b'{"output": {"shape": [2], "data": [1, "NaN"]}, "loss": 0.5}')
        self.check({"expect": {"output": [1, "NaN"], "loss": 0.5,
                               "batch_statistics": {"$absent": True}}}, resp)
        self.fails({"expect": {"loss": 0.6}}, resp, "loss")
        self.fails({"expect": {"arrays.Scaling": [1]}}, resp, "missing")


if __name__ == "__main__":
    unittest.main()
