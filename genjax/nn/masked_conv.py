"""Causal convolutions for PixelCNNs: the output at pixel (i, j) sees only pixels before
it in raster order (rows above, then the pixels to its left in its row).

Two kinds (van den Oord et al., 2016, "Pixel Recurrent Neural Networks" and
"Conditional Image Generation with PixelCNN Decoders"):

* `MaskedConv`: a k x k convolution whose kernel is multiplied by a raster mask. Type
  "A" (the first layer) hides the centre pixel, type "B" (every later layer) keeps it,
  so the stack's output at a pixel never depends on that pixel's input. Stacked, the
  receptive field misses a triangle above-right of each pixel: the *blind spot*
  (`tests/test_pixelcnn.py` shows it by Jacobian).
* `VerticalConv` / `HorizontalConv`: the two stacks of the gated PixelCNN, which has no
  blind spot. The vertical stack sees a k-wide window of the rows strictly above
  (type "A") or up to and including the current row of the *vertical features*, which
  themselves never see their own row; the horizontal stack sees the pixels to the left in
  the current row (type "A": strictly left; "B": up to and including the centre). Their
  kernels are cropped to the causal half ((k//2 + 1) x k and 1 x (k//2 + 1)) and padded
  on one side, so no multiply touches a masked zero.

Images here have one channel (grayscale); the masks are spatial only. Colour images would
also need the R -> G -> B channel masks of the PixelRNN paper, which are not built.

Shapes: x [B, H, W, Cin] -> [B, H, W, Cout] ("same" size). Kernels [kh, kw, Cin, Cout]
as ``nnx.Conv``; on CPUs the convolutions go through `genjax.nn.loop_conv.conv2d` (fast
gradients inside compiled loops), elsewhere through XLA's own convolution.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax.nn import loop_conv

MASK_TYPES = ("A", "B")


def _check_type(mask_type):
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' (first layer: hides the centre pixel) or "
                         f"'B' (later layers: keeps it), got {mask_type!r}")


def raster_mask(kernel: int, mask_type: str) -> np.ndarray:
    """The k x k mask [k, k] of a masked convolution: 1 for the kernel taps at pixels
    before the centre in raster order (rows above; left in the centre row), and the
    centre itself for type "B". ``kernel`` odd."""
    _check_type(mask_type)
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"a masked convolution needs an odd kernel size, got {kernel}")
    c = kernel // 2
    m = np.zeros((kernel, kernel), np.float32)
    m[:c] = 1.0
    m[c, :c] = 1.0
    if mask_type == "B":
        m[c, c] = 1.0
    return m


def _conv(x, w, pads):
    conv = loop_conv._lax_conv if loop_conv.native() else loop_conv.conv2d  # noqa: SLF001
    return conv(x, w, (1, 1), pads)


class _Kernel(nnx.Module):
    def __init__(self, kh, kw, cin, cout, *, rngs: nnx.Rngs, fan_in=None):
        # LeCun normal over the taps that are used (masked taps do not count)
        fan = fan_in if fan_in is not None else kh * kw * cin
        self.kernel = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(),
                                                             (kh, kw, cin, cout))
                                / np.sqrt(max(fan, 1)))
        self.bias = nnx.Param(jnp.zeros((cout,)))


class MaskedConv(_Kernel):
    """A k x k convolution with the raster mask of ``mask_type`` ("A" or "B") applied to
    its kernel [k, k, Cin, Cout] (masked taps get zero gradient); "same" output size."""

    def __init__(self, in_features: int, out_features: int, kernel: int, mask_type: str, *,
                 rngs: nnx.Rngs):
        self.mask = nnx.Variable(jnp.asarray(raster_mask(kernel, mask_type)[:, :, None, None]))
        super().__init__(kernel, kernel, in_features, out_features, rngs=rngs,
                         fan_in=int(self.mask[...].sum()) * in_features)
        self.k = kernel

    def __call__(self, x):
        p = self.k // 2
        return _conv(x, self.kernel[...] * self.mask[...], ((p, p), (p, p))) + self.bias[...]


class VerticalConv(_Kernel):
    """The gated PixelCNN's vertical stack: output (i, j) sees rows i - k//2 .. i - 1
    (type "A") or .. i (type "B") and columns j - k//2 .. j + k//2. Kernel
    [k//2 (+1 for "B"), k, Cin, Cout]."""

    def __init__(self, in_features: int, out_features: int, kernel: int, mask_type: str, *,
                 rngs: nnx.Rngs):
        _check_type(mask_type)
        self.k, self.type = kernel, mask_type
        rows = kernel // 2 + (mask_type == "B")
        super().__init__(rows, kernel, in_features, out_features, rngs=rngs)

    def __call__(self, x):
        p, h = self.k // 2, x.shape[1]
        # "A": pad k//2 rows on top and none below: output row r sees rows r - k//2 ..
        # r - 1 and there are H + 1 of them; the first H are the causal ones
        y = _conv(x, self.kernel[...], ((p, 0), (p, p)))
        return y[:, :h] + self.bias[...]


class HorizontalConv(_Kernel):
    """The gated PixelCNN's horizontal stack: output (i, j) sees row i, columns
    j - k//2 .. j - 1 (type "A") or .. j (type "B"). Kernel [1, k//2 (+1), Cin, Cout]."""

    def __init__(self, in_features: int, out_features: int, kernel: int, mask_type: str, *,
                 rngs: nnx.Rngs):
        _check_type(mask_type)
        self.k, self.type = kernel, mask_type
        cols = kernel // 2 + (mask_type == "B")
        super().__init__(1, cols, in_features, out_features, rngs=rngs)

    def __call__(self, x):
        p, w = self.k // 2, x.shape[2]
        y = _conv(x, self.kernel[...], ((0, 0), (p, 0)))
        return y[:, :, :w] + self.bias[...]
