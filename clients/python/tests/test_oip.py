"""test_oip.py - the client's Open Inference Protocol (KServe V2) calls against the real binary:
metadata, readiness, infer with JSON data, with Triton's binary tensor data extension (binary
inputs, binary outputs, both, neither), the raw binary request, request ids, versions, errors.
Numbers are checked against batch norm inference with known moving statistics."""
import unittest

from normd import Client, NormdError, Tensor

from . import test_client as tc
from .normd_server import NormdServer

try:
    import numpy as np
except ImportError:
    np = None

SERVER = None
MODEL = "oip_bn"


def setUpModule():
    global SERVER
    SERVER = NormdServer()
    with Client(SERVER.url) as c:
        c.create_layer(tc.bn_definition(MODEL))


def tearDownModule():
    SERVER.stop()


def flat_x():
    return Tensor([2, 3], [v for row in tc.X for v in row])


class TestOip(unittest.TestCase):
    def setUp(self):
        self.c = Client(SERVER.url)

    def tearDown(self):
        self.c.close()

    def assertRef(self, rows):
        want = tc.bn_inference(tc.X)
        self.assertEqual(len(rows), len(want))
        for g, w in zip(rows, want):
            for a, b in zip(g, w):
                self.assertAlmostEqual(a, b, delta=1e-5 + 1e-5 * abs(b))

    def test_server_metadata_and_health(self):
        meta = self.c.server_metadata()
        self.assertIn("binary_tensor_data", meta["extensions"])
        self.assertTrue(self.c.server_live())
        self.assertTrue(self.c.server_ready())

    def test_model_metadata_and_ready(self):
        meta = self.c.model_metadata(MODEL)
        self.assertEqual(meta["name"], MODEL)
        self.assertEqual(meta["platform"], "normd_BatchNormalization")
        self.assertEqual(meta["inputs"][0]["datatype"], "FP32")
        self.assertEqual(meta["inputs"][0]["shape"], [-1, 3])
        self.assertEqual(len(meta["outputs"]), 1)
        self.assertTrue(self.c.model_ready(MODEL))
        self.assertTrue(self.c.model_ready(MODEL, version=1))
        self.assertFalse(self.c.model_ready("no_such_model"))

    def test_infer_json(self):
        r = self.c.infer(MODEL, tc.X, id="req-42")
        self.assertEqual(r.id, "req-42")
        self.assertEqual(r.model_name, MODEL)
        self.assertEqual(str(r.model_version), "1")
        self.assertNotIn("binary_data_size", r.response["outputs"][0].get("parameters") or {})
        self.assertRef(r.output)

    def test_infer_binary_in_and_out(self):
        r = self.c.infer(MODEL, flat_x())
        self.assertIsInstance(r.output, Tensor)
        self.assertEqual(r.output.shape, (2, 3))
        self.assertEqual(r.response["outputs"][0]["parameters"]["binary_data_size"], 24)
        self.assertRef(r.output.tolist())
        # bit for bit what /v1 forward answers
        self.assertEqual(r.output, self.c.forward(MODEL, flat_x()))

    def test_infer_binary_in_json_out(self):
        r = self.c.infer(MODEL, flat_x(), binary_output=False)
        self.assertIn("data", r.response["outputs"][0])
        self.assertRef(r.output.tolist())

    def test_infer_json_in_binary_out(self):
        r = self.c.infer(MODEL, flat_x(), binary=False, binary_output=True, outputs=["output"])
        self.assertEqual(r.response["outputs"][0]["parameters"]["binary_data_size"], 24)
        self.assertRef(r.output.tolist())

    def test_infer_raw_binary_request(self):
        r = self.c.infer(MODEL, flat_x(), raw=True)
        out = r.output
        self.assertRef(out.tolist() if isinstance(out, Tensor) else out)

    def test_infer_version_path_and_input_name(self):
        r = self.c.infer(MODEL, tc.X, version="1", input_name="input")
        self.assertRef(r.output)
        with self.assertRaises(NormdError) as e:
            self.c.infer(MODEL, tc.X, version="999")
        self.assertIn(e.exception.status, (400, 404))
        self.assertTrue(e.exception.message)

    def test_infer_errors(self):
        with self.assertRaises(NormdError) as e:
            self.c.infer("no_such_model", tc.X, input_name="input")
        self.assertEqual(e.exception.status, 404)
        self.assertIsNone(e.exception.code)  # OIP errors are {"error": "message"}
        self.assertTrue(e.exception.message)
        self.assertTrue(e.exception.request_id)
        with self.assertRaises(NormdError) as e:
            self.c.infer(MODEL, [[1.0, 2.0]])
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(NormdError) as e:
            self.c.infer(MODEL, tc.X, input_name="not_the_input")
        self.assertEqual(e.exception.status, 400)
        with self.assertRaises(NormdError) as e:
            self.c.infer(MODEL, Tensor([2, 2], [1, 2, 3, 4]))
        self.assertEqual(e.exception.status, 400)

    @unittest.skipIf(np is None, "numpy is not installed")
    def test_infer_numpy(self):
        x = np.array(tc.X, dtype=np.float32)
        r = self.c.infer(MODEL, x)
        self.assertIsInstance(r.output, np.ndarray)
        self.assertRef(r.output.tolist())
        r64 = self.c.infer(MODEL, x.astype(np.float64))  # FP64 on the wire, FP32 back
        np.testing.assert_array_equal(r64.output, r.output)
        rj = self.c.infer(MODEL, x, binary=False)
        np.testing.assert_array_equal(rj.output, r.output)


if __name__ == "__main__":
    unittest.main()
