"""Metrics on a map held at the precision a published code stored it in (`stored_precision`).

Dombrowski et al. keep the attention map in the dtype it was saved in (float32 under their
default `ATTN_PRECISION`, float16 when that is set to fp16) and compute every later step from that
tensor: the min-max, the bilinear resize to 512, CNR, AUC, top-1 and the GMM mask. PyTorch rounds
the result of each tensor operation to the tensor's dtype, so:

- `held_at` rounds an array to the stored dtype (the resized map is a tensor of that dtype);
- `cnr_held` rounds each mean and variance to it, then combines them in that dtype's arithmetic
  (`(mean_in - mean_out) / sqrt(var_in + var_out)` on 0-d tensors). The sums inside a mean or
  variance run in float64 here; PyTorch's own reductions (float32 accumulation) differ from their
  float64 value by a few units in the last place of the stored dtype at most.

AUC and top-1 depend only on the order of the held values, so they need nothing beyond `held_at`.
"""

from __future__ import annotations

import numpy as np

DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def held_at(values: np.ndarray, precision: str) -> np.ndarray:
    """`values` rounded to the nearest `precision` value (NaN stays NaN), returned as float64."""
    v = np.asarray(values, dtype=np.float64)
    if precision == "float64":
        return v
    return v.astype(DTYPES[precision]).astype(np.float64)


def _side(values: np.ndarray, ddof: int, dtype) -> tuple:
    if values.min() == values.max():
        return dtype(values[0]), dtype(0)
    return dtype(values.mean()), dtype(values.var(ddof=ddof))


def cnr_held(h: np.ndarray, g: np.ndarray, ddof: int, precision: str, inf_value: float = 0.0) -> float:
    """Signed CNR over the union mask `g` with every intermediate rounded to `precision` (NaN pixels excluded).

    An empty side gives 0; a zero denominator gives 0, or +-`inf_value` when the means differ.
    """
    dtype = DTYPES[precision]
    finite = np.isfinite(h)
    inside, outside = h[g & finite], h[~g & finite]
    if inside.size <= ddof or outside.size <= ddof:
        return 0.0
    m_in, v_in = _side(inside, ddof, dtype)
    m_out, v_out = _side(outside, ddof, dtype)
    with np.errstate(over="ignore"):
        num = dtype(m_in - m_out)
        den = dtype(np.sqrt(dtype(v_in + v_out)))
        if den > 0:
            return float(dtype(num / den))
    return float(np.sign(num) * inf_value) if num != 0 else 0.0


__all__ = ["DTYPES", "cnr_held", "held_at"]
