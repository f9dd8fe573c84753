"""normd - a client for the normd HTTP service (standard library only; numpy optional).

    from normd import Client
    c = Client("http://127.0.0.1:8080")
    c.create_layer(name="bn", type="BatchNormalization", input=[3])
    y = c.forward("bn", [[1, 2, 3]])
"""
from ._http import NormdConnectionError, NormdError, Reply
from ._tensor import Tensor
from .client import Client, InferResult

__all__ = ["Client", "InferResult", "NormdConnectionError", "NormdError", "Reply", "Tensor"]
__version__ = "0.1.0"
