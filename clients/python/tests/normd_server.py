"""normd_server.py - what the client tests share: normd on a free loopback port (NORMD = the
binary), stopped by its pid, and a counting TCP proxy that can drop requests.

Standard library only."""
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

NORMD = os.environ.get("NORMD", "build/normd")
LIVENESS = 20.0  # seconds normd may take to start or stop: a liveness bound, never a speed goal


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NormdServer:
    """The real binary on 127.0.0.1:<free port>."""

    def __init__(self, *flags):
        if not os.path.exists(NORMD):
            raise RuntimeError("no normd binary at %s (set NORMD)" % NORMD)
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([NORMD, "--host", "127.0.0.1", "--port", str(self.port),
                                      "--log-level", "warn"] + list(flags), stderr=self.log)
        deadline = time.time() + LIVENESS
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("normd exited %s at start: %s" % (self.proc.returncode, self.stderr()))
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("normd did not start within %.0f s" % LIVENESS)
            time.sleep(0.05)

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(LIVENESS)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Proxy:
    """A TCP proxy in front of normd counting the connections it accepts. The first `drop`
    connections have their first request read (it arrived) and are then closed unanswered."""

    def __init__(self, port, drop=0):
        self.target = port
        self.drop = drop
        self.accepted = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._sock.close()

    def _accept(self):
        while True:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                drop = self.dropped < self.drop
                if drop:
                    self.dropped += 1
            if drop:
                threading.Thread(target=self._drop, args=(c,), daemon=True).start()
            else:
                u = socket.create_connection(("127.0.0.1", self.target))
                threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
                threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    @staticmethod
    def _drop(c):
        c.settimeout(LIVENESS)
        try:
            data = b""
            while b"\r\n\r\n" not in data:  # the whole head: the request has arrived
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        c.close()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
