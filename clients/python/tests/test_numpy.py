"""test_numpy.py - numpy arrays through the client against the real binary: binary bodies in and
out, exact float32 bits, base64 train-steps. Skipped (reported as skipped) without numpy."""
import unittest

from normd import Client, NormdError

from . import test_client as tc
from .normd_server import NormdServer

try:
    import numpy as np
except ImportError:  # Debian's python3 without python3-numpy
    np = None

SERVER = None


def setUpModule():
    global SERVER
    if np is not None:
        SERVER = NormdServer()


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()


@unittest.skipIf(np is None, "numpy is not installed")
class TestNumpy(unittest.TestCase):
    def setUp(self):
        self.c = Client(SERVER.url)
        self.name = "np_" + self._testMethodName
        self.c.create_layer(tc.bn_definition(self.name))

    def tearDown(self):
        self.c.delete_layer(self.name)
        self.c.close()

    def reference(self, x):
        g, b, m, v = (np.array(a, dtype=np.float64) for a in (tc.GAMMA, tc.BETA, tc.MEAN, tc.VAR))
        return g * (x.astype(np.float64) - m) / np.sqrt(v + tc.EPS) + b

    def test_forward_binary(self):
        rng = np.random.default_rng(7)
        x = rng.standard_normal((64, 3)).astype(np.float32)
        r = self.c.forward(self.name, x, full=True)
        y = r["output"]
        self.assertIsInstance(y, np.ndarray)
        self.assertEqual((y.shape, y.dtype), ((64, 3), np.float32))
        self.assertEqual(r["version"], 1)
        np.testing.assert_allclose(y, self.reference(x), rtol=1e-5, atol=1e-6)
        # float64 and non-contiguous inputs are sent as float32
        y2 = self.c.forward(self.name, np.asfortranarray(x.astype(np.float64)))
        np.testing.assert_array_equal(y2, y)
        # the same bits as the JSON reply
        js = np.array(self.c.forward(self.name, x.tolist()), dtype=np.float32)
        np.testing.assert_array_equal(js, y)

    def test_arrays_binary(self):
        np.testing.assert_array_equal(self.c.get_array(self.name, "MovingVariance", as_="numpy"),
                                      np.array(tc.VAR, dtype=np.float32))
        v = np.array([0.25, 0.5, 0.75], dtype=np.float32)
        self.assertEqual(self.c.put_array(self.name, "MovingMean", v)["version"], 2)
        np.testing.assert_array_equal(self.c.get_array(self.name, "MovingMean", as_="numpy"), v)
        ex = self.c.extract(self.name, ["MovingMean", "Scaling"], as_="numpy")
        np.testing.assert_array_equal(ex["MovingMean"], v)
        with self.assertRaises(NormdError) as e:
            self.c.put_array(self.name, "MovingMean", np.zeros((2, 2), np.float32))
        self.assertEqual((e.exception.status, e.exception.code), (422, "shape_mismatch"))

    def test_train_step_numpy(self):
        x = np.array(tc.X, dtype=np.float32)
        g = np.array([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]], dtype=np.float32)
        r = self.c.train_step(self.name, x, output_gradient=g,
                              optimizer={"type": "sgd", "learning_rate": 0.1},
                              returns=["output", "input_gradient", "arrays", "batch_statistics"])
        self.assertEqual(r["version"], 2)
        mu, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
        xhat = (x - mu) / np.sqrt(var + tc.EPS)
        np.testing.assert_allclose(r["batch_statistics"]["mean"], mu, rtol=1e-6)
        np.testing.assert_allclose(r["arrays"]["Scaling"], np.array(tc.GAMMA) - 0.1 * (g * xhat).sum(0),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(r["arrays"]["MovingMean"], 0.9 * np.array(tc.MEAN) + 0.1 * mu, rtol=1e-5)
        self.assertIsInstance(r["input_gradient"], np.ndarray)
        self.assertEqual(r["input_gradient"].shape, (2, 3))

    def test_create_with_numpy_arrays(self):
        name = self.name + "_2"
        self.c.put_layer(name, type="BatchNormalization", input=[3],
                         arrays={"Scaling": np.array([1.5, 2.5, 3.5], dtype=np.float32)})
        np.testing.assert_array_equal(self.c.get_array(name, "Scaling", as_="numpy"), [1.5, 2.5, 3.5])
        self.c.delete_layer(name)


if __name__ == "__main__":
    unittest.main()
