"""_tensor.py - how tensors travel: numpy arrays and Tensor as little-endian float32 bytes,
everything else as JSON. numpy is imported only when a numpy object is seen or asked for."""
import array
import base64
import sys

_BIG_ENDIAN = sys.byteorder == "big"


def _numpy():
    import numpy  # noqa: optional dependency, imported on first use only
    return numpy


def is_numpy(x):
    """True for a numpy array, without importing numpy (a caller without numpy has none)."""
    return type(x).__module__ == "numpy" and hasattr(x, "dtype") and hasattr(x, "shape")


class Tensor:
    """A float32 tensor without numpy: `shape` (a tuple) and `data`, an array.array('f') of the
    values in row-major order. Travels as binary like a numpy array does."""

    __slots__ = ("shape", "data")

    def __init__(self, shape, data):
        self.shape = tuple(int(d) for d in shape)
        if isinstance(data, array.array) and data.typecode == "f":
            self.data = data
        elif isinstance(data, (bytes, bytearray, memoryview)):
            self.data = _floats_from_le(bytes(data))
        else:
            self.data = array.array("f", data)
        n = 1
        for d in self.shape:
            n *= d
        if n != len(self.data):
            raise ValueError("shape %s needs %d values, got %d" % (list(self.shape), n, len(self.data)))

    def tobytes(self):
        """The values as little-endian float32 bytes."""
        if _BIG_ENDIAN:
            a = array.array("f", self.data)
            a.byteswap()
            return a.tobytes()
        return self.data.tobytes()

    def tolist(self):
        """The values as nested lists of the tensor's shape."""
        return nest(list(self.data), self.shape)

    def __len__(self):
        return self.shape[0] if self.shape else 0

    def __eq__(self, other):
        return isinstance(other, Tensor) and self.shape == other.shape and self.data == other.data

    def __repr__(self):
        return "Tensor(shape=%s, data=%s)" % (list(self.shape), list(self.data)[:8])


def _floats_from_le(buf):
    if len(buf) % 4:
        raise ValueError("float32 data of %d bytes is not a multiple of 4" % len(buf))
    a = array.array("f")
    a.frombytes(buf)
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def nest(flat, shape):
    """Row-major flat values as nested lists of `shape` (a bare value for rank 0)."""
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def list_shape(x):
    """The shape of rectangular nested lists (the first element of each level decides)."""
    shape = []
    while isinstance(x, (list, tuple)):
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    return shape


def flatten(x):
    """Nested lists as one flat list, row-major."""
    if not isinstance(x, (list, tuple)):
        return [x]
    out = []
    stack = [iter(x)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, (list, tuple)):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def binary_kind(x):
    """"numpy" or "tensor" for what travels as binary, None for JSON."""
    if isinstance(x, Tensor):
        return "tensor"
    if is_numpy(x):
        return "numpy"
    return None


def to_f32_bytes(x):
    """(shape tuple, little-endian float32 bytes) of a numpy array or Tensor."""
    if isinstance(x, Tensor):
        return x.shape, x.tobytes()
    np = _numpy()
    a = np.ascontiguousarray(x, dtype="<f4")
    return tuple(a.shape), a.tobytes()


def from_f32_bytes(buf, shape, kind):
    """Little-endian float32 bytes as `kind`: "numpy", "tensor" or "list"."""
    shape = tuple(int(d) for d in shape)
    if kind == "numpy":
        np = _numpy()
        return np.frombuffer(buf, dtype="<f4").astype(np.float32).reshape(shape)
    t = Tensor(shape, _floats_from_le(bytes(buf)))
    return t if kind == "tensor" else t.tolist()


def shape_header(shape):
    return ",".join(str(d) for d in shape)


def parse_shape_header(value):
    if value is None or not value.strip():
        return ()
    return tuple(int(d) for d in value.split(","))


def b64_form(x):
    """A numpy array or Tensor as normd's base64 JSON tensor form (exact float32)."""
    shape, buf = to_f32_bytes(x)
    return {"shape": list(shape), "datatype": "FP32", "b64": base64.b64encode(buf).decode("ascii")}


def json_default(x):
    """json.dumps' `default`: numpy arrays and Tensor as base64 tensors, numpy scalars as numbers."""
    if binary_kind(x):
        return b64_form(x)
    if type(x).__module__ == "numpy" and hasattr(x, "item"):
        return x.item()
    raise TypeError("%s is not JSON serializable" % type(x).__name__)


def decode_b64_tensors(obj, kind):
    """Replaces every base64 tensor form ({"shape", "datatype", "b64"}) inside a reply by `kind`."""
    if isinstance(obj, dict):
        if "b64" in obj and "shape" in obj and isinstance(obj["b64"], str):
            dt = str(obj.get("datatype", "FP32")).upper()
            raw = base64.b64decode(obj["b64"])
            if dt == "FP64":
                wide = array.array("d")
                wide.frombytes(raw)
                if _BIG_ENDIAN:
                    wide.byteswap()
                raw = Tensor([len(wide)], array.array("f", wide)).tobytes()
            return from_f32_bytes(raw, obj["shape"], kind)
        return {k: decode_b64_tensors(v, kind) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_b64_tensors(v, kind) for v in obj]
    return obj
