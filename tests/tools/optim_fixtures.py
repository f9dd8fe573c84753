#!/usr/bin/env python3
"""Fixture numbers for tests/check_optim.c and tests/check_init.c.

Pure Python (no numpy, no torch), run once; the printed arrays are pasted into the C tests.

optim: replays PyTorch's single-tensor SGD and Adam step by step with float32 rounding after
every tensor operation (torch/optim/sgd.py and adam.py, foreach=False), so the C code, which
computes each element in double and rounds once, is checked against PyTorch's own arithmetic.

rng: xoshiro256** from the state {1, 2, 3, 4} (the reference generator, an independent check
of nd_rng_next), and nd_rng_seed's splitmix64 mixing for (seed 42, stream 0) and (42, 1).

    python3 tests/tools/optim_fixtures.py
"""
import math
import struct

M64 = (1 << 64) - 1


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def vec(xs):
    return [f32(x) for x in xs]


W0 = vec([0.5, -1.25, 2.0, 0.0, -0.1])
G1 = vec([0.1, -0.2, 0.3, -0.05, 0.0])
G2 = vec([0.2, 0.1, -0.3, 0.05, 1.0])


def sgd(momentum, nesterov, lr=0.1):
    lr, mu = f32(lr), f32(momentum)
    w, buf = list(W0), None
    for g in (G1, G2):
        if buf is None:
            buf = list(g)  # torch.clone(grad)
        else:  # buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            buf = [f32(f32(b * mu) + gi) for b, gi in zip(buf, g)]
        d = [f32(gi + f32(mu * b)) for gi, b in zip(g, buf)] if nesterov else buf
        w = [f32(wi + f32(-lr * di)) for wi, di in zip(w, d)]  # param.add_(d, alpha=-lr)
    return w


def adam(lr=0.01, b1=0.9, b2=0.999, eps=1e-7):
    w, m, v = list(W0), [0.0] * 5, [0.0] * 5
    for step, g in enumerate((G1, G2), start=1):
        m = [f32(mi + f32(f32(1 - b1) * f32(gi - mi))) for mi, gi in zip(m, g)]  # lerp_
        v = [f32(f32(vi * f32(b2)) + f32(f32(1 - b2) * f32(gi * gi))) for vi, gi in zip(v, g)]
        bc1 = 1 - b1 ** step  # Python floats, as torch does for a non-capturable step
        bc2 = 1 - b2 ** step
        step_size = lr / bc1
        bc2_sqrt = math.sqrt(bc2)
        denom = [f32(f32(f32(math.sqrt(vi)) / f32(bc2_sqrt)) + f32(eps)) for vi in v]
        w = [f32(wi + f32(f32(-step_size) * f32(mi / di))) for wi, mi, di in zip(w, m, denom)]
    return w


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


def xoshiro(s, count):
    s, out = list(s), []
    for _ in range(count):
        out.append(rotl((s[1] * 5) & M64, 7) * 9 & M64)
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return out


GAMMA = 0x9E3779B97F4A7C15


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def seeded_state(seed, stream):
    x = mix(mix((seed + GAMMA) & M64) ^ stream)
    state = []
    for _ in range(4):
        x = (x + GAMMA) & M64
        state.append(mix(x))
    return state


def c_float(x):
    text = "%.9g" % x
    return text + ("f" if "." in text or "e" in text else ".0f")


def c_floats(name, xs):
    body = ", ".join(c_float(x) for x in xs)
    print("static const float %s[5] = {%s};" % (name, body))


def c_u64(name, xs):
    body = ", ".join("0x%016xu" % x for x in xs)
    print("static const uint64_t %s[%d] = {%s};" % (name, len(xs), body))


if __name__ == "__main__":
    print("// W0, G1, G2 as in tests/tools/optim_fixtures.py; two steps, lr 0.1 (sgd), 0.01 (adam)")
    c_floats("torch_sgd", sgd(0.0, False))
    c_floats("torch_momentum", sgd(0.9, False))
    c_floats("torch_nesterov", sgd(0.9, True))
    c_floats("torch_adam", adam())
    print("// xoshiro256** from {1, 2, 3, 4}; nd_rng_seed(42, 0) and (42, 1) then 4 draws")
    c_u64("xoshiro_1234", xoshiro([1, 2, 3, 4], 6))
    c_u64("seed42_stream0", xoshiro(seeded_state(42, 0), 4))
    c_u64("seed42_stream1", xoshiro(seeded_state(42, 1), 4))
