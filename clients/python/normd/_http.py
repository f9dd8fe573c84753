"""_http.py - one keep-alive HTTP/1.1 connection (TCP_NODELAY), bounded retries of idempotent
calls, and normd's errors as NormdError."""
import http.client
import json
import select
import socket
import ssl
import threading
import time
import urllib.parse

IDEMPOTENT = frozenset(("GET", "HEAD", "PUT", "DELETE", "OPTIONS"))


class NormdError(Exception):
    """Every error of the client: an error reply of the server (status, code, field, message,
    request_id as normd sends them; OIP routes give only a message) or, as
    NormdConnectionError, a transport failure (status 0)."""

    def __init__(self, status, code, message, field=None, request_id=None, body=None):
        self.status = status
        self.code = code
        self.field = field
        self.message = message
        self.request_id = request_id
        self.body = body
        text = "%s %s: %s" % (status, code, message) if code else "%s: %s" % (status, message)
        if field:
            text += " (field %s)" % field
        if request_id:
            text += " [request %s]" % request_id
        super().__init__(text)


class NormdConnectionError(NormdError):
    """No answer: the server could not be reached, closed the connection, or timed out.
    `sent` tells whether the request may have reached the server."""

    def __init__(self, message, sent, cause=None):
        super().__init__(0, "timeout" if isinstance(cause, socket.timeout) else "connection_error",
                         message)
        self.sent = sent
        self.__cause__ = cause


def error_from_reply(status, headers, body):
    """NormdError of an error reply: {"error": {...}} (/v1), {"error": "..."} (OIP) or text."""
    rid = headers.get("x-request-id")
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return NormdError(err.get("status", status), err.get("code"), err.get("message", ""),
                          err.get("field"), rid, doc)
    if isinstance(err, str):
        return NormdError(status, None, err, None, rid, doc)
    text = body.decode("utf-8", "replace").strip() if body else http.client.responses.get(status, "")
    return NormdError(status, None, text, None, rid, doc)


class Reply:
    """A finished exchange: status, lower-cased headers and the whole body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None


class _NoDelay:
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1


class _HTTP(_NoDelay, http.client.HTTPConnection):
    opened = 0


class _HTTPS(_NoDelay, http.client.HTTPSConnection):
    opened = 0


class Transport:
    """One persistent connection to base_url, reused across calls (a lock serializes threads).

    retries: how many times an idempotent call (GET, HEAD, PUT, DELETE) is repeated after a
    transport error or a 503; any call is repeated when its connection failed before a byte of
    the request was sent. POST (train-step, forward, ...) is never resent once sent."""

    def __init__(self, base_url, api_key=None, timeout=30.0, retries=2, backoff=0.05,
                 headers=None, ssl_context=None):
        u = urllib.parse.urlsplit(base_url if "://" in base_url else "http://" + base_url)
        if u.scheme not in ("http", "https"):
            raise ValueError("base_url must be http:// or https://, not %r" % base_url)
        self.scheme = u.scheme
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.headers = dict(headers or {})
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key
        self.ssl_context = ssl_context
        self.connections_opened = 0  # connections made so far (keep-alive keeps it at 1)
        self._conn = None
        self._lock = threading.Lock()

    def close(self):
        with self._lock:
            self._drop()

    def _drop(self):
        if self._conn is not None:
            self.connections_opened += self._conn.opened
            self._conn.close()
            self._conn = None

    def socket(self):
        """The socket of the current connection (None when there is none)."""
        return self._conn.sock if self._conn is not None else None

    def _connection(self):
        """The open connection, or a new one when there is none or the server closed it (a
        readable idle socket is at EOF or holds garbage: it cannot carry a request)."""
        c = self._conn
        if c is not None and c.sock is not None:
            try:
                readable = select.select([c.sock], [], [], 0)[0]
            except (OSError, ValueError):
                readable = True
            if readable:
                self._drop()
        elif c is not None:  # http.client closed it after a Connection: close reply
            self._drop()
        if self._conn is None:
            if self.scheme == "https":
                self._conn = _HTTPS(self.host, self.port, timeout=self.timeout,
                                    context=self.ssl_context or ssl.create_default_context())
            else:
                self._conn = _HTTP(self.host, self.port, timeout=self.timeout)
        return self._conn

    def opened_total(self):
        return self.connections_opened + (self._conn.opened if self._conn is not None else 0)

    def target(self, path, query=None):
        q = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        return self.prefix + path + ("?" + urllib.parse.urlencode(q) if q else "")

    def request(self, method, path, query=None, body=None, headers=None, ok=(200,)):
        """The Reply of one call; raises NormdError for a status not in `ok`."""
        url = self.target(path, query)
        h = dict(self.headers)
        h.update(headers or {})
        idempotent = method in IDEMPOTENT
        attempt = 0
        while True:
            try:
                reply = self._once(method, url, body, h)
            except NormdConnectionError as e:
                if attempt < self.retries and (idempotent or not e.sent):
                    attempt += 1
                    time.sleep(self.backoff * (2 ** (attempt - 1)))
                    continue
                raise
            if reply.status == 503 and idempotent and attempt < self.retries:
                attempt += 1
                time.sleep(min(_retry_after(reply.headers), 1.0) or self.backoff * (2 ** (attempt - 1)))
                continue
            if reply.status not in ok:
                raise error_from_reply(reply.status, reply.headers, reply.body)
            return reply

    def _once(self, method, url, body, headers):
        with self._lock:
            conn = self._connection()
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as e:
                    self._drop()
                    raise NormdConnectionError("cannot connect to %s:%d: %s" % (self.host, self.port, e),
                                               sent=False, cause=e)
            try:
                conn.request(method, url, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                status = resp.status
            except (OSError, http.client.HTTPException) as e:
                self._drop()
                raise NormdConnectionError("%s %s: no answer from %s:%d: %s"
                                           % (method, url, self.host, self.port, e or type(e).__name__),
                                           sent=True, cause=e)
            if resp.will_close:
                self._drop()
            return Reply(status, hdrs, data)


def _query_value(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def _retry_after(headers):
    try:
        return float(headers.get("retry-after", ""))
    except ValueError:
        return 0.0
