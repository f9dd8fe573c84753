"""test_client.py - the Python client against the real binary, standard library only: every /v1
route, numbers against references computed here, binary bodies through normd.Tensor, errors
(status, code, field, request id), keep-alive reuse, retries of idempotent calls only.

  NORMD=build/normd python3 -m unittest discover -s clients/python/tests -t clients/python
"""
import array
import math
import socket
import time
import unittest

import normd
from normd import Client, NormdConnectionError, NormdError, Tensor

from .normd_server import NormdServer, Proxy, free_port

GAMMA = [2.0, 0.5, 1.0]
BETA = [0.1, -0.2, 0.3]
MEAN = [1.0, 2.0, 3.0]
VAR = [4.0, 0.25, 1.0]
EPS = 0.001
X = [[1.5, 2.5, -1.0], [0.0, 2.0, 4.0]]
SERVER = None


def setUpModule():
    global SERVER
    SERVER = NormdServer()


def tearDownModule():
    SERVER.stop()


def bn_inference(x):
    """Batch norm in inference with the known moving statistics, in float64."""
    return [[GAMMA[c] * (row[c] - MEAN[c]) / math.sqrt(VAR[c] + EPS) + BETA[c] for c in range(3)]
            for row in x]


def f32(v):
    return array.array("f", [v])[0]


def bn_definition(name):
    return {"name": name, "type": "BatchNormalization", "input": [3],
            "options": {"epsilon": EPS, "momentum": 0.9},
            "arrays": {"Scaling": GAMMA, "Biases": BETA, "MovingMean": MEAN, "MovingVariance": VAR}}


class Base(unittest.TestCase):
    def setUp(self):
        self.c = Client(SERVER.url, timeout=30)
        self.name = "t_%s" % self._testMethodName[:100]
        try:
            self.c.delete_layer(self.name)
        except NormdError:
            pass

    def tearDown(self):
        self.c.close()

    def assertClose(self, got, want, rel=1e-5, abs_=1e-6):
        if isinstance(want, (list, tuple)):
            self.assertEqual(len(got), len(want), "%r vs %r" % (got, want))
            for g, w in zip(got, want):
                self.assertClose(g, w, rel, abs_)
        else:
            self.assertTrue(math.isclose(got, want, rel_tol=rel, abs_tol=abs_), "%r != %r" % (got, want))

    def make_bn(self, name=None):
        return self.c.create_layer(bn_definition(name or self.name))


class TestLayers(Base):
    def test_create_get_list_delete(self):
        info = self.make_bn()
        self.assertEqual(info["name"], self.name)
        self.assertEqual(info["type"], "BatchNormalization")
        self.assertTrue(info["initialized"])
        self.assertEqual(info["version"], 1)
        self.assertEqual(self.c.get_layer(self.name)["input"], [3])
        self.assertIn(self.name, [l["name"] for l in self.c.list_layers()])
        self.c.delete_layer(self.name)
        with self.assertRaises(NormdError) as e:
            self.c.get_layer(self.name)
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field), (404, "not_found", "name"))

    def test_put_replaces_and_if_match(self):
        self.assertEqual(self.c.put_layer(self.name, type="BatchNormalization", input=[3])["version"], 1)
        info = self.c.put_layer(self.name, bn_definition(self.name), if_match=1)
        self.assertEqual(info["version"], 2)
        with self.assertRaises(NormdError) as e:
            self.c.put_layer(self.name, bn_definition(self.name), if_match=1)
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field),
                         (412, "precondition_failed", "If-Match"))
        with self.assertRaises(NormdError) as e:
            self.c.delete_layer(self.name, if_match=7)
        self.assertEqual(e.exception.status, 412)
        self.c.delete_layer(self.name, if_match=2)

    def test_initialize(self):
        info = self.c.create_layer(name=self.name, type="BatchNormalization")
        self.assertFalse(info["initialized"])
        with self.assertRaises(NormdError) as e:
            self.c.forward(self.name, [[1, 2, 3]])
        self.assertEqual((e.exception.status, e.exception.code), (409, "not_initialized"))
        info = self.c.initialize(self.name, input=[3], seed=1)
        self.assertTrue(info["initialized"])
        self.assertEqual(info["input"], [3])

    def test_server_routes(self):
        self.assertEqual(self.c.health(), {"status": "ok"})
        self.assertEqual(self.c.ready(), {"status": "ready"})
        self.assertTrue(self.c.is_ready())
        self.assertEqual(self.c.info()["name"], "normd")
        self.assertIn("BatchNormalization", self.c.types()["types"])
        self.assertIsInstance(self.c.type_options("BatchNormalization"), dict)
        with self.assertRaises(NormdError) as e:
            self.c.type_options("NoSuchType")
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field), (404, "not_found", "type"))
        self.make_bn()
        self.c.forward(self.name, X)
        m = self.c.metrics()
        self.assertIn('normd_http_requests_total{route="/v1/layers/{name}/forward",status="200"}', m)

    def test_request_escape_hatch(self):
        r = self.c.request("GET", "/v1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["name"], "normd")
        self.assertTrue(r.headers["x-request-id"])


class TestForward(Base):
    def test_json_matches_reference(self):
        self.make_bn()
        out = self.c.forward(self.name, X)
        self.assertClose(out, bn_inference(X))
        full = self.c.forward(self.name, X, full=True)
        self.assertEqual(full["version"], 1)
        one = self.c.forward(self.name, X[0])  # one example: rank 1 back
        self.assertClose(one, bn_inference(X)[0])
        many = self.c.forward(self.name, inputs=[X[0], X[1]])
        self.assertClose(many, bn_inference(X))

    def test_binary_tensor_body(self):
        self.make_bn()
        t = Tensor([2, 3], [v for row in X for v in row])
        out = self.c.forward(self.name, t, full=True)
        self.assertIsInstance(out["output"], Tensor)
        self.assertEqual(out["output"].shape, (2, 3))
        self.assertEqual(out["version"], 1)
        self.assertClose(out["output"].tolist(), bn_inference(X))
        # the same bits as the JSON answer (shortest float32 round-trip text)
        js = self.c.forward(self.name, X)
        self.assertEqual(out["output"].tolist(), [[f32(v) for v in row] for row in js])
        # raw bytes and array.array travel too
        t2 = Tensor((2, 3), t.tobytes())
        self.assertEqual(self.c.forward(self.name, t2), out["output"])
        train = self.c.forward(self.name, t, mode="train")  # batch statistics, nothing changes
        mu = [(X[0][c] + X[1][c]) / 2 for c in range(3)]
        var = [((X[0][c] - mu[c]) ** 2 + (X[1][c] - mu[c]) ** 2) / 2 for c in range(3)]
        want = [[GAMMA[c] * (row[c] - mu[c]) / math.sqrt(var[c] + EPS) + BETA[c] for c in range(3)] for row in X]
        self.assertClose(train.tolist(), want, rel=1e-4, abs_=1e-4)
        self.assertEqual(self.c.get_layer(self.name)["version"], 1)

    def test_binary_shape_error(self):
        self.make_bn()
        with self.assertRaises(NormdError) as e:
            self.c.forward(self.name, Tensor([2, 2], [1, 2, 3, 4]))
        err = e.exception
        self.assertEqual((err.status, err.code, err.field), (422, "shape_mismatch", "input"))
        self.assertIn(self.name, err.message)
        self.assertTrue(err.request_id)

    def test_json_shape_error(self):
        self.make_bn()
        with self.assertRaises(NormdError) as e:
            self.c.forward(self.name, [[1, 2]])
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field), (422, "shape_mismatch", "input"))
        with self.assertRaises(NormdError) as e:
            self.c.forward(self.name, X, mode="sideways")
        self.assertEqual((e.exception.status, e.exception.field), (422, "mode"))


class TestTrainStep(Base):
    def reference_step(self, x, g, lr):
        n = len(x)
        mu = [sum(r[c] for r in x) / n for c in range(3)]
        var = [sum((r[c] - mu[c]) ** 2 for r in x) / n for c in range(3)]
        xhat = [[(r[c] - mu[c]) / math.sqrt(var[c] + EPS) for c in range(3)] for r in x]
        dgamma = [sum(g[i][c] * xhat[i][c] for i in range(n)) for c in range(3)]
        dbeta = [sum(g[i][c] for i in range(n)) for c in range(3)]
        return {"Scaling": [GAMMA[c] - lr * dgamma[c] for c in range(3)],
                "Biases": [BETA[c] - lr * dbeta[c] for c in range(3)],
                "MovingMean": [0.9 * MEAN[c] + 0.1 * mu[c] for c in range(3)],
                "MovingVariance": [0.9 * VAR[c] + 0.1 * var[c] for c in range(3)],
                "mean": mu, "variance": var}

    def test_json_step_matches_reference(self):
        self.make_bn()
        g = [[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]]
        ref = self.reference_step(X, g, 0.1)
        r = self.c.train_step(self.name, X, output_gradient=g, optimizer={"type": "sgd", "learning_rate": 0.1},
                              returns=["arrays", "batch_statistics"])
        self.assertEqual(r["version"], 2)
        for k in ("Scaling", "Biases", "MovingMean", "MovingVariance"):
            self.assertClose(r["arrays"][k], ref[k], rel=1e-4, abs_=1e-5)
        self.assertClose(r["batch_statistics"]["mean"], ref["mean"])
        self.assertClose(r["batch_statistics"]["variance"], ref["variance"], rel=1e-4)

    def test_tensor_step_is_base64_and_comes_back_as_tensor(self):
        self.make_bn()
        g = [[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]]
        ref = self.reference_step(X, g, 0.1)
        r = self.c.train_step(self.name, Tensor([2, 3], [v for row in X for v in row]),
                              output_gradient=Tensor([2, 3], [v for row in g for v in row]),
                              optimizer={"type": "sgd", "learning_rate": 0.1}, returns=["output", "arrays"])
        self.assertIsInstance(r["output"], Tensor)
        self.assertIsInstance(r["arrays"]["Scaling"], Tensor)
        self.assertClose(list(r["arrays"]["Scaling"].data), ref["Scaling"], rel=1e-4, abs_=1e-5)

    def test_errors(self):
        self.make_bn()
        with self.assertRaises(NormdError) as e:
            self.c.train_step(self.name, X, output_gradient=[[1, 2, 3]])
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field),
                         (422, "shape_mismatch", "output_gradient"))
        with self.assertRaises(NormdError) as e:
            self.c.train_step(self.name, X, returns=["nonsense"])
        self.assertEqual((e.exception.status, e.exception.code), (422, "invalid_value"))
        self.assertEqual(self.c.get_layer(self.name)["version"], 1)


class TestArrays(Base):
    def test_get_put_list_extract(self):
        self.make_bn()
        self.assertEqual(self.c.get_array(self.name, "MovingVariance"), VAR)
        t = self.c.get_array(self.name, "gamma", as_="tensor")  # alias, binary
        self.assertEqual(t, Tensor([3], GAMMA))
        doc = self.c.get_array(self.name, "Biases", output_format="flat")
        self.assertEqual(doc["name"], "Biases")
        self.assertEqual(doc["array"]["shape"], [3])
        self.assertEqual(self.c.put_array(self.name, "MovingMean", [0.0, 0.5, 1.0])["version"], 2)
        r = self.c.put_array(self.name, "MovingVariance", Tensor([3], [1.0, 1.0, 1.0]), if_match=2)
        self.assertEqual(r, {"name": "MovingVariance", "version": 3})
        ex = self.c.extract(self.name, ["MovingMean", "MovingVariance", "Epsilon"])
        self.assertEqual(ex["MovingMean"], [0.0, 0.5, 1.0])
        self.assertEqual(ex["MovingVariance"], [1.0, 1.0, 1.0])
        self.assertClose(ex["Epsilon"], EPS)
        ex = self.c.extract(self.name, ["Scaling"], as_="tensor")
        self.assertEqual(ex["Scaling"], Tensor([3], GAMMA))
        names = [a["name"] for a in self.c.list_arrays(self.name)["arrays"]]
        self.assertEqual(names, ["Scaling", "Biases", "MovingMean", "MovingVariance"])

    def test_errors(self):
        self.make_bn()
        with self.assertRaises(NormdError) as e:
            self.c.put_array(self.name, "Scaling", Tensor([2], [1, 2]))
        self.assertEqual((e.exception.status, e.exception.code), (422, "shape_mismatch"))
        with self.assertRaises(NormdError) as e:
            self.c.put_array(self.name, "MovingVariance", [-1.0, 1.0, 1.0])
        self.assertEqual((e.exception.status, e.exception.code), (422, "invalid_value"))
        with self.assertRaises(NormdError) as e:
            self.c.get_array(self.name, "Nope")
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field), (404, "not_found", "array"))
        with self.assertRaises(NormdError) as e:
            self.c.put_array(self.name, "Scaling", GAMMA, if_match=9)
        self.assertEqual(e.exception.status, 412)

    def test_shared_arrays(self):
        a, b = self.name + "_a", self.name + "_b"
        for n in (a, b):
            try:
                self.c.delete_layer(n)
            except NormdError:
                pass
            self.c.create_layer(name=n, type="BatchNormalization", input=[3],
                                arrays={"Scaling": {"shared": self.name + "_g"}})
        self.assertIn(self.name + "_g", self.c.list_shared_arrays())
        self.c.put_array(a, "Scaling", [3.0, 2.0, 1.0])
        sa = self.c.get_shared_array(self.name + "_g")
        self.assertEqual(sorted(sa["layers"]), [a, b])
        self.assertEqual(sa["array"], [3.0, 2.0, 1.0])
        self.assertEqual(self.c.get_shared_array(self.name + "_g", as_="tensor")["array"], Tensor([3], [3, 2, 1]))
        self.assertEqual(self.c.get_array(b, "Scaling"), [3.0, 2.0, 1.0])
        with self.assertRaises(NormdError) as e:
            self.c.get_shared_array("no_such_shared")
        self.assertEqual((e.exception.status, e.exception.code), (404, "not_found"))


class TestExportImport(Base):
    def test_json_and_binary_round_trip(self):
        self.make_bn()
        self.c.train_step(self.name, X, output_gradient=X, optimizer={"type": "adam"})
        doc = self.c.export(self.name)
        self.assertEqual(doc["format"], "normd-layer")
        blob = self.c.export(self.name, binary=True)
        self.assertEqual(blob[:4], b"NDX1")
        for suffix, body in (("_j", doc), ("_b", blob)):
            copy = self.name + suffix
            try:
                self.c.delete_layer(copy)
            except NormdError:
                pass
            info = self.c.import_layer(copy, body)
            self.assertEqual(info["version"], 2)
            self.assertEqual(self.c.forward(copy, X), self.c.forward(self.name, X))
            a = self.c.train_step(self.name + suffix, X, output_gradient=X, optimizer={"type": "adam"},
                                  returns=["arrays"], output_format="b64")
            self.assertEqual(self.c.import_layer(copy, body, if_match=3)["version"], 4)
            self.assertIn("arrays", a)
        with self.assertRaises(NormdError) as e:
            self.c.import_layer(self.name + "_x", b"NDX1garbage")
        self.assertEqual((e.exception.status, e.exception.code, e.exception.field), (400, "malformed_body", "body"))
        with self.assertRaises(NormdError) as e:
            self.c.import_layer(self.name + "_x", {"format": "other", "format_version": 1,
                                                   "definition": {}, "arrays": {}})
        self.assertEqual((e.exception.status, e.exception.field), (422, "format"))


class TestConnection(Base):
    def test_keep_alive_reuses_one_connection(self):
        proxy = Proxy(SERVER.port)
        try:
            c = Client(proxy.url)
            c.create_layer(bn_definition(self.name))
            sock = c._t.socket()
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0, True)
            t = Tensor([2, 3], [v for row in X for v in row])
            for _ in range(5):
                c.forward(self.name, X)
                c.forward(self.name, t)
                c.get_array(self.name, "Scaling", as_="tensor")
                c.put_array(self.name, "Biases", Tensor([3], BETA))
                c.get_layer(self.name)
            with self.assertRaises(NormdError):  # an error reply keeps the connection too
                c.get_layer("no_such_layer")
            c.metrics()
            self.assertIs(c._t.socket(), sock)
            self.assertEqual(c.connections_opened, 1)
            self.assertEqual(proxy.accepted, 1)
            c.close()
        finally:
            proxy.close()

    def test_idempotent_get_is_retried(self):
        self.make_bn()
        proxy = Proxy(SERVER.port, drop=1)
        try:
            c = Client(proxy.url, retries=2, backoff=0.01)
            self.assertEqual(c.get_layer(self.name)["name"], self.name)
            self.assertEqual(proxy.dropped, 1)
            self.assertEqual(proxy.accepted, 2)
            c.close()
        finally:
            proxy.close()

    def test_put_is_retried(self):
        self.make_bn()
        proxy = Proxy(SERVER.port, drop=2)
        try:
            c = Client(proxy.url, retries=2, backoff=0.01)
            self.assertEqual(c.put_array(self.name, "Biases", [0.0, 0.0, 0.0])["version"], 2)
            self.assertEqual(proxy.accepted, 3)
            c.close()
        finally:
            proxy.close()

    def test_post_train_step_is_not_retried(self):
        self.make_bn()
        proxy = Proxy(SERVER.port, drop=1)
        try:
            c = Client(proxy.url, retries=3, backoff=0.01)
            with self.assertRaises(NormdConnectionError) as e:
                c.train_step(self.name, X, output_gradient=X)
            self.assertIsInstance(e.exception, NormdError)
            self.assertEqual(e.exception.status, 0)
            self.assertTrue(e.exception.sent)
            self.assertEqual(proxy.accepted, 1)  # one attempt only
            self.assertEqual(proxy.dropped, 1)
            self.assertEqual(self.c.get_layer(self.name)["version"], 1)
            # the client recovers: the next call opens a new connection
            self.assertEqual(c.train_step(self.name, X, output_gradient=X)["version"], 2)
            self.assertEqual(proxy.accepted, 2)
            c.close()
        finally:
            proxy.close()

    def test_retries_are_bounded(self):
        self.make_bn()
        proxy = Proxy(SERVER.port, drop=10)
        try:
            c = Client(proxy.url, retries=2, backoff=0.01)
            with self.assertRaises(NormdConnectionError):
                c.get_layer(self.name)
            self.assertEqual(proxy.accepted, 3)  # the call and two retries
            c.close()
        finally:
            proxy.close()

    def test_unreachable(self):
        c = Client("http://127.0.0.1:%d" % free_port(), retries=1, backoff=0.01, timeout=5)
        with self.assertRaises(NormdConnectionError) as e:
            c.train_step("x", X)
        self.assertEqual((e.exception.status, e.exception.code), (0, "connection_error"))
        self.assertFalse(e.exception.sent)
        c.close()

    def test_timeout(self):
        lsock = socket.socket()  # accepts (backlog) and never answers
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        try:
            c = Client("http://127.0.0.1:%d" % lsock.getsockname()[1], timeout=0.3, retries=0)
            with self.assertRaises(NormdConnectionError) as e:
                c.forward("x", X)
            self.assertEqual(e.exception.code, "timeout")
            c.close()
        finally:
            lsock.close()


class TestServerClosesIdle(unittest.TestCase):
    def test_post_after_idle_close_uses_a_new_connection(self):
        srv = NormdServer("--idle-timeout", "1")
        try:
            c = Client(srv.url, retries=0)
            c.create_layer(bn_definition("idle"))
            deadline = time.time() + 20
            sock = c._t.socket()
            # wait until normd has closed the idle connection (EOF readable on our socket)
            import select
            while time.time() < deadline and not select.select([sock], [], [], 0.2)[0]:
                pass
            out = c.forward("idle", X)  # POST, retries=0: must not go out on the dead socket
            self.assertEqual(len(out), 2)
            self.assertEqual(c.connections_opened, 2)
            c.close()
        finally:
            srv.stop()


class TestApiKey(unittest.TestCase):
    def test_bearer_key(self):
        srv = NormdServer("--api-key", "s3cret")
        try:
            anon = Client(srv.url)
            self.assertEqual(anon.health(), {"status": "ok"})
            with self.assertRaises(NormdError) as e:
                anon.list_layers()
            self.assertEqual((e.exception.status, e.exception.code, e.exception.field),
                             (401, "unauthorized", "Authorization"))
            with Client(srv.url, api_key="wrong") as wrong, self.assertRaises(NormdError) as e:
                wrong.list_layers()
            self.assertEqual(e.exception.status, 401)
            with Client(srv.url, api_key="s3cret") as c:
                self.assertEqual(c.list_layers(), [])
                self.assertEqual(c.create_layer(bn_definition("k"))["name"], "k")
            anon.close()
        finally:
            srv.stop()


class TestTensor(unittest.TestCase):
    def test_tensor_helpers(self):
        t = Tensor([2, 2], [1, 2, 3, 4])
        self.assertEqual(t.tolist(), [[1.0, 2.0], [3.0, 4.0]])
        self.assertEqual(Tensor([2, 2], t.tobytes()), t)
        self.assertEqual(t.tobytes()[:4], b"\x00\x00\x80\x3f")  # little-endian 1.0f
        with self.assertRaises(ValueError):
            Tensor([3], [1, 2])
        self.assertEqual(normd.__version__, "0.1.0")


if __name__ == "__main__":
    unittest.main()
