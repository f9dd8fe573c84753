#!/usr/bin/env python3
"""gen_torch_expectations.py - PyTorch's own answers for the PyTorch-named layer types.

Run once with Debian's torch (apt-get install -y --no-install-recommends python3-torch
python3-numpy; then /usr/bin/python3 tests/tools/gen_torch_expectations.py); it writes
tests/data/torch/expectations.json, which tests/server/test_frameworks.py (no torch needed)
checks normd against. The file is committed; rerun only to add cases.

For each case: the class and its constructor arguments, the definition normd gets (the same
arguments; "input" only where PyTorch's sizes do not fix the per-example shape), the initial
weight and bias, two inputs, and what torch answers:
  eval_output       module.eval()(x1), before any training
  train_output      module.train()(x1) on a copy (normalized with the batch's statistics)
  running           running_mean/running_var after one, then two training forwards (x1, x2)
  eval_after        module.eval()(x1) after those two forwards
  input_gradient, weight_gradient, bias_gradient
                    of sum(train-mode output * output_gradient) w.r.t. x1 and the parameters,
                    on the untrained module
References are computed in float64 from the float32-rounded inputs and parameters. Debian
bookworm's torch (1.13) has no nn.RMSNorm and no LayerNorm(bias=False): those two are built
from torch operations exactly as torch 2.4 defines them (RMSNorm's eps=None is
torch.finfo(float32).eps for float32 inputs, as normd serves float32).
"""
import copy
import json
import os
import sys

import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "torch",
                   "expectations.json")
F32_EPS = float(torch.finfo(torch.float32).eps)


def f32(t):
    """Rounds to float32 values (held in float64), so normd sees exactly these numbers."""
    return t.to(torch.float32).to(torch.float64)


def data(shape, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return f32(torch.randn(*shape, generator=g) * scale + shift)


def tolist(t):
    return None if t is None else [float(v) for v in t.detach().reshape(-1)] if t.dim() == 1 \
        else t.detach().tolist()


def flat(t):
    return None if t is None else {"shape": list(t.shape),
                                   "data": [float(v) for v in t.detach().reshape(-1)]}


class RMSNorm(torch.nn.Module):
    """torch.nn.RMSNorm of torch >= 2.4: x * rsqrt(mean(x^2 over the trailing dims) + eps) * w."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True):
        super().__init__()
        self.shape = [normalized_shape] if isinstance(normalized_shape, int) \
            else list(normalized_shape)
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(self.shape)) if elementwise_affine else None
        self.bias = None

    def forward(self, x):
        dims = tuple(range(-len(self.shape), 0))
        eps = F32_EPS if self.eps is None else self.eps
        y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        return y * self.weight if self.weight is not None else y


class LayerNormNoBias(torch.nn.LayerNorm):
    """LayerNorm(bias=False) of torch >= 2.1: the weight alone."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        assert not bias
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine)
        if elementwise_affine:
            self.bias = None

    def forward(self, x):
        return torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, None,
                                              self.eps)


def build(cls, args):
    if cls == "RMSNorm":
        return RMSNorm(**args)
    if cls == "LayerNorm" and args.get("bias") is False:
        return LayerNormNoBias(**args)
    return getattr(torch.nn, cls)(**args)


def set_params(m):
    """A deterministic, non-trivial affine: weight 1 + 0.1 k, bias 0.05 k - 0.1 (flattened)."""
    if getattr(m, "weight", None) is not None:
        n = m.weight.numel()
        m.weight.data = f32((1.0 + 0.1 * torch.arange(n)).reshape(m.weight.shape))
    if getattr(m, "bias", None) is not None:
        n = m.bias.numel()
        m.bias.data = f32((0.05 * torch.arange(n) - 0.1).reshape(m.bias.shape))


def running(m):
    if getattr(m, "running_mean", None) is None:
        return None
    return {"running_mean": tolist(m.running_mean), "running_var": tolist(m.running_var)}


def case(name, cls, args, shape, definition_input=None, seed=1):
    m = build(cls, args)
    set_params(m)
    x1 = data(shape, seed, 1.5, 0.5)
    x2 = data(shape, seed + 100, 0.7, -0.3)
    dy = data(shape, seed + 200)
    out = {"name": name, "type": cls, "args": args, "input_shape": list(shape),
           "weight": flat(getattr(m, "weight", None)), "bias": flat(getattr(m, "bias", None)),
           "x1": flat(x1), "x2": flat(x2), "output_gradient": flat(dy)}
    if definition_input is not None:
        out["definition_input"] = definition_input
    with torch.no_grad():
        out["eval_output"] = flat(copy.deepcopy(m).eval()(x1))
        out["train_output"] = flat(copy.deepcopy(m).train()(x1))
    g = copy.deepcopy(m).train()
    xg = x1.clone().requires_grad_(True)
    (g(xg) * dy).sum().backward()
    out["input_gradient"] = flat(xg.grad)
    out["weight_gradient"] = flat(g.weight.grad) if getattr(g, "weight", None) is not None \
        else None
    out["bias_gradient"] = flat(g.bias.grad) if getattr(g, "bias", None) is not None else None
    t = copy.deepcopy(m).train()
    steps = []
    with torch.no_grad():
        for x in (x1, x2):
            t(x)
            steps.append(running(t))
        out["running"] = steps if steps[0] is not None else None
        out["eval_after"] = flat(t.eval()(x1))
    return out


CASES = [
    ("bn1d", "BatchNorm1d", {"num_features": 3}, (4, 3)),
    ("bn1d_seq_cumulative", "BatchNorm1d", {"num_features": 2, "momentum": None}, (3, 2, 4),
     [2, None]),
    ("bn2d", "BatchNorm2d", {"num_features": 3, "eps": 1e-3, "momentum": 0.2}, (2, 3, 2, 2)),
    ("bn2d_no_running_stats", "BatchNorm2d", {"num_features": 2, "track_running_stats": False},
     (2, 2, 2, 3)),
    ("bn3d_no_affine", "BatchNorm3d", {"num_features": 2, "affine": False}, (2, 2, 2, 2, 2)),
    ("layernorm", "LayerNorm", {"normalized_shape": [3, 4]}, (2, 3, 4)),
    ("layernorm_no_bias", "LayerNorm", {"normalized_shape": 5, "bias": False}, (3, 5)),
    ("layernorm_seq", "LayerNorm", {"normalized_shape": 4, "eps": 1e-3}, (2, 3, 4), [None, 4]),
    ("groupnorm", "GroupNorm", {"num_groups": 2, "num_channels": 4}, (2, 4, 3), [4, 3]),
    ("groupnorm_no_affine", "GroupNorm", {"num_groups": 3, "num_channels": 3, "affine": False,
                                          "eps": 1e-4}, (2, 3, 2, 2), [3, 2, 2]),
    ("instancenorm1d", "InstanceNorm1d", {"num_features": 3}, (2, 3, 5)),
    ("instancenorm2d_affine", "InstanceNorm2d", {"num_features": 2, "affine": True},
     (2, 2, 3, 3)),
    ("instancenorm3d", "InstanceNorm3d", {"num_features": 2, "eps": 1e-3}, (1, 2, 2, 2, 3)),
    ("rmsnorm", "RMSNorm", {"normalized_shape": [4]}, (3, 4)),
    ("rmsnorm_2d_no_affine", "RMSNorm", {"normalized_shape": [2, 3], "eps": 1e-5,
                                         "elementwise_affine": False}, (2, 2, 3)),
    # Running statistics of an instance norm: the mean over the batch of the per-instance
    # statistics (unbiased variance), used in eval. Appended: earlier cases keep their seeds.
    ("instancenorm1d_running", "InstanceNorm1d", {"num_features": 3,
                                                  "track_running_stats": True}, (4, 3, 5)),
    ("instancenorm2d_running_affine", "InstanceNorm2d",
     {"num_features": 2, "affine": True, "track_running_stats": True, "momentum": 0.3},
     (3, 2, 2, 3)),
]


def main():
    cases = [case(*c[:4], definition_input=c[4] if len(c) > 4 else None, seed=i + 1)
             for i, c in enumerate(CASES)]
    doc = {"generator": "tests/tools/gen_torch_expectations.py",
           "torch_version": torch.__version__,
           "notes": "float64 references of float32-rounded data; RMSNorm and "
                    "LayerNorm(bias=False) built from torch operations (see the generator)",
           "cases": cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %s: %d cases, %d bytes" % (OUT, len(cases), os.path.getsize(OUT)),
          file=sys.stderr)


if __name__ == "__main__":
    main()
