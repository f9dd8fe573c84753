#!/usr/bin/env python3
"""Prints the power-of-ten tables of api/fmt.c (Schubfach's g).

For each e in [-292, 324]: 10^e ~= g * 2^r with 2^125 <= g < 2^126, where
r = floor(log2(10^e)) - 125 and g = floor(10^e / 2^r) + 1 (always an over-estimate, as the
algorithm requires). Exact rational arithmetic: no floating point is involved.

With --float: float32's table, e in [-31, 45] (e = -k for every binary exponent of a float),
each g's top 63 bits plus one (still an over-estimate) and the shift
floor(log2(10^e)) + 33 that puts a float's scaled significand where fmt.c's 64-bit multiply
wants it.

    python3 tests/tools/gen_pow10.py > /tmp/pow10.inc
    python3 tests/tools/gen_pow10.py --float > /tmp/pow10_float.inc
"""
import sys
from fractions import Fraction

E_MIN, E_MAX = -292, 324
FLOAT_E_MIN, FLOAT_E_MAX = -31, 45


def floor_log2(x):
    """floor(log2(x)) of a positive Fraction, exactly."""
    n = x.numerator.bit_length() - x.denominator.bit_length()
    if Fraction(2) ** n > x:
        n -= 1
    assert Fraction(2) ** n <= x < Fraction(2) ** (n + 1)
    return n


def g126(e):
    """The 126-bit g of 10^e."""
    p = Fraction(10) ** e
    r = floor_log2(p) - 125
    scaled = p / Fraction(2) ** r
    g = scaled.numerator // scaled.denominator + 1
    assert 2**125 <= g < 2**126 + 1 and g < 2**126
    return g


def main():
    if sys.argv[1:] == ["--float"]:
        for e in range(FLOAT_E_MIN, FLOAT_E_MAX + 1):
            g = (g126(e) >> 63) + 1
            assert 2**62 < g <= 2**63
            shift = floor_log2(Fraction(10) ** e) + 33
            print("    {0x%016xu, %d}, // 10^%d" % (g, shift, e))
        return
    rows = []
    for e in range(E_MIN, E_MAX + 1):
        g = g126(e)
        rows.append("{0x%016xu, 0x%016xu}," % (g >> 64, g & (2**64 - 1)))
    for i in range(0, len(rows), 2):
        print("    " + " ".join(rows[i:i + 2]))


if __name__ == "__main__":
    main()
