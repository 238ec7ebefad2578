"""The integer arithmetic LiteRT runs on Google's uint8 MobileNets, as tables over the uint8 inputs.

Runtimes differ in how they round the same quantized graph: on V3-Small, ONNX Runtime's float
hard-swish, its ``QLinearAdd`` and its average pooling (round half to even) disagreed with LiteRT on one
output value in a hundred, and on 8.5% of the 1300 images' top-1. LiteRT's default run (XNNPACK, with
LiteRT's own kernels for what XNNPACK does not take) computes:

- HARD_SWISH in LiteRT's own kernel (XNNPACK leaves uint8 hard-swish to it): gemmlowp fixed point in
  16 bits, :func:`hard_swish_table`;
- ADD in XNNPACK's uint8 kernel: 20-bit multipliers, rounding half up (:func:`add_table`; LiteRT's own
  kernel, which runs the same files without XNNPACK, rounds in 31-bit fixed point instead);
- AVERAGE_POOL_2D as an integer mean rounded half up (both kernel sets);
- convolutions and MUL as XNNPACK's float32 requantization, which is what ONNX Runtime's fused
  ``QLinearConv``/``QLinearMul`` compute too.

Each table reproduces every value LiteRT computes for these ops on real images (``tests/test_tflite.py``
checks three images through Google's V2 and V3-Small files).
"""

from __future__ import annotations

import math

import numpy as np

_U8 = np.arange(256, dtype=np.int64)


def _quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``real ~ m * 2**(shift - 31)`` with ``m`` in [2**30, 2**31)."""
    if real == 0:
        return 0, 0
    fraction, shift = math.frexp(real)
    m = round(fraction * (1 << 31))
    if m == 1 << 31:
        m, shift = m // 2, shift + 1
    return (0, 0) if shift < -31 else (m, shift)


def _trunc_div(x: np.ndarray, d: int) -> np.ndarray:
    """C's integer division (toward zero) by a positive ``d``."""
    q = np.abs(x) // d
    return np.where(x < 0, -q, q)


def _rounding_divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    if exponent <= 0:
        return x
    mask = (1 << exponent) - 1
    return (x >> exponent) + ((x & mask) > (mask >> 1) + (x < 0))


def _high_mul16(a: np.ndarray, b: int, rounding: bool) -> np.ndarray:
    """gemmlowp's int16 ``SaturatingRoundingDoublingHighMul`` (``rounding``) or TFLite's
    ``SaturatingDoublingHighMul``: the high half of ``2 * a * b``."""
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14)) if rounding else 0
    return np.where((a == -32768) & (b == -32768), 32767, _trunc_div(ab + nudge, 1 << 15))


def _int16_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``."""
    m, shift = _quantize_multiplier(real)
    return (32767 if m >= (1 << 31) - 1 - (1 << 15) else (m + (1 << 15)) >> 16), shift


def hard_swish_table(in_scale: float, in_zero: int, out_scale: float, out_zero: int) -> np.ndarray:
    """LiteRT's uint8 HARD_SWISH for every input value (``HardSwishPrepare`` and
    ``reference_ops::HardSwish``), 256 uint8s."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(in_scale)
    out_m, out_shift = _int16_multiplier(float(hires / f32(out_scale)))
    relu_m, relu_shift = _int16_multiplier(float(hires / (f32(3.0) / f32(32768.0))))
    x = (_U8 - in_zero) * 128
    pre = _high_mul16(x, out_m, rounding=True)
    reluish = np.clip(x * (1 << max(relu_shift - 1, 0)), -32768, 32767)
    reluish = _high_mul16(reluish, relu_m, rounding=True)
    if relu_shift > 0:
        reluish = np.clip(reluish * 2, -32768, 32767)
    reluish = _rounding_divide_by_pot(reluish, -relu_shift)
    out = _high_mul16((reluish + (1 << 15)) >> 1, pre, rounding=False)
    return np.clip(_rounding_divide_by_pot(out, -out_shift) + out_zero, 0, 255).astype(np.uint8)


def _add_multipliers(a_scale: float, b_scale: float, out_scale: float) -> tuple[int, int, int]:
    """XNNPACK's uint8 ADD parameters (``xnn_init_qu8_add_minmax_scalar_params``): each input's multiplier
    (the largest in [2**20, 2**21)) and the right shift."""
    f32 = np.float32
    a, b = f32(f32(a_scale) / f32(out_scale)), f32(f32(b_scale) / f32(out_scale))
    shift = 20 - (int(np.array(max(a, b), f32).view(np.uint32) >> 23) - 127)
    a_m, b_m = (int(np.rint(f32(s * f32(2.0**shift)))) for s in (a, b))
    return a_m, b_m, shift


def add_table(a: tuple[float, int], b: tuple[float, int], out: tuple[float, int]) -> np.ndarray:
    """XNNPACK's uint8 ADD of grids ``a`` and ``b`` (scale, zero point) onto ``out`` for every pair of
    input values: a 256 x 256 uint8 table indexed ``[a, b]``, rounded half up."""
    a_m, b_m, shift = _add_multipliers(a[0], b[0], out[0])
    acc = a_m * (_U8[:, None] - a[1]) + b_m * (_U8[None, :] - b[1])
    return np.clip(((acc + (1 << (shift - 1))) >> shift) + out[1], 0, 255).astype(np.uint8)
