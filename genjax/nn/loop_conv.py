"""2-D convolutions whose gradients stay fast inside compiled loops on CPUs.

The training loop runs many steps in one ``lax.scan``. JAX differentiates
``lax.conv_general_dilated`` into a weight-gradient convolution with swapped batch and
feature axes and, for strided convolutions, an input-dilated convolution; XLA's CPU
backend runs both on slow paths, the first 25x slower inside a loop body than outside
(measured on a 2-core CPU), and the weight gradient of a stride-2 transposed convolution
is slow even outside one. This module computes the same functions with gradients built
only from what XLA:CPU does fast, ordinary NHWC convolutions and matrix products:

* weight gradient (`weight_grad_path`): under genjax's CPU compiler options
  (`genjax.xla`, convolutions on XLA's own Eigen kernels), one canonical NHWC
  convolution with the roles swapped (the input's channels as the batch, its batch as
  the contracted feature, the output gradient as a kernel dilated by the stride), which
  made the DCGAN and U-Net training steps 1.4x and 1.3x faster than im2col products on a
  2-core Intel Xeon (1.5-1.7x on an AMD EPYC); 1x1 kernels take a plain matrix product.
  Under YNNPACK convolutions (XLA's default options), whose swapped-role convolution is
  slow, im2col products: the kernel's strided slices of the padded input, stacked, times
  the output gradient (for stride-1 layers with >= 8 input channels one product per
  kernel row);
* input gradient of a strided convolution, and a transposed convolution itself: the
  sub-pixel decomposition, one stride-1 convolution per output phase (a transposed
  convolution with stride s is s^2 small convolutions whose outputs interleave), so no
  multiply ever touches an inserted zero.

Values and gradients equal JAX's own up to float32 summation order (tested against
``nnx.Conv`` and ``nnx.ConvTranspose``). `Conv` and `ConvTranspose` are drop-in Flax NNX
layers with the parameters of ``nnx.Conv`` / ``nnx.ConvTranspose`` (kernel
[kh, kw, Cin, Cout], transpose_kernel=False). They take this path only when jax's default
backend is the CPU; on GPUs and TPUs (whose convolution libraries differentiate fast)
they call ``lax.conv_general_dilated`` / ``lax.conv_transpose`` and let JAX
differentiate, so accelerator runs get the vendor kernels.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from genjax import xla

_DN = ("NHWC", "HWIO", "NHWC")


def _lax_conv(x, w, strides, padding):
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_DN)


def conv_padding(padding, kernel, strides, spatial):
    """Explicit ((lo, hi), (lo, hi)) of an ordinary convolution for "SAME" / "VALID" or
    explicit pairs."""
    if isinstance(padding, str):
        return tuple(tuple(p) for p in lax.padtype_to_pads(spatial, kernel, strides, padding))
    return tuple(tuple(p) for p in padding)


def transpose_padding(padding, kernel, strides):
    """The padding ``lax.conv_transpose`` applies to its dilated input for "SAME" /
    "VALID" (or explicit pairs, passed through)."""
    if not isinstance(padding, str):
        return tuple(tuple(p) for p in padding)
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME', 'VALID' or explicit pairs, got {padding!r}")
    pads = []
    for k, s in zip(kernel, strides):        # as jax.lax.conv_transpose computes them
        if padding == "SAME":
            total = k + s - 2
            lo = k - 1 if s > k - 1 else -(-total // 2)
        else:
            total, lo = k + s - 2 + max(k - s, 0), k - 1
        pads.append((lo, total - lo))
    return tuple(pads)


def dilated_correlation(x, w, strides, lo, out_size):
    """y[o] = sum_t w[t] xd[o + t - lo] over both spatial axes, where xd is x dilated by
    ``strides`` (x[i] at s*i, zeros between) and zero outside: x [B, H, W, Cin],
    w [kh, kw, Cin, Cout] -> [B, *out_size, Cout]. This is a transposed convolution with
    input padding ``lo`` (before) cropped to ``out_size``, computed by phases: output
    rows o = s*i + r use only the taps t = r - lo (mod s), a stride-1 convolution of x."""
    (sh, sw), (lh, lw), (oh, ow) = strides, lo, out_size
    if oh % sh or ow % sw:
        raise ValueError(f"dilated_correlation: output {out_size} not divisible by the "
                         f"stride {strides}")
    kh, kw = w.shape[:2]
    n_h, n_w = oh // sh, ow // sw

    def plan(r, s, l, k):
        taps = [t for t in range(k) if (r + t - l) % s == 0]
        return taps, ((r + taps[0] - l) // s if taps else 0)

    plans_h = [plan(r, sh, lh, kh) for r in range(sh)]
    plans_w = [plan(r, sw, lw, kw) for r in range(sw)]
    # one zero-padding of x covers every phase's window
    lo_pad = max([0] + [-d for _, d in plans_h + plans_w])
    hi_h = max([0] + [d + len(t) - 1 + n_h - x.shape[1] for t, d in plans_h])
    hi_w = max([0] + [d + len(t) - 1 + n_w - x.shape[2] for t, d in plans_w])
    xp = jnp.pad(x, ((0, 0), (lo_pad, max(hi_h, 0)), (lo_pad, max(hi_w, 0)), (0, 0)))
    if w.shape[3] * sh * sw <= COMBINE_MAX_CHANNELS and all(t for t, _ in plans_h + plans_w):
        return _combined_phases(xp, w, plans_h, plans_w, lo_pad, (n_h, n_w), (sh, sw))
    rows = []
    for taps_h, d_h in plans_h:
        cols = []
        for taps_w, d_w in plans_w:
            if not taps_h or not taps_w:
                cols.append(jnp.zeros((x.shape[0], n_h, n_w, w.shape[3]), x.dtype))
                continue
            sub = w[jnp.asarray(taps_h)][:, jnp.asarray(taps_w)]         # [mh, mw, Ci, Co]
            win = xp[:, lo_pad + d_h:lo_pad + d_h + n_h + len(taps_h) - 1,
                     lo_pad + d_w:lo_pad + d_w + n_w + len(taps_w) - 1]
            cols.append(conv2d(win, sub, (1, 1), ((0, 0), (0, 0))))         # [B, n_h, n_w, Co]
        rows.append(jnp.stack(cols, 3))                       # [B, n_h, n_w, sw, Co]
    y = jnp.stack(rows, 2)                                    # [B, n_h, sh, n_w, sw, Co]
    return y.reshape(x.shape[0], oh, ow, w.shape[3])


COMBINE_MAX_CHANNELS = 8


def _combined_phases(xp, w, plans_h, plans_w, lo_pad, n, strides):
    """All phases of `dilated_correlation` as one stride-1 convolution over the union of
    their windows, with s^2 * Cout output channels (zeros where a phase has no tap). More
    multiplies, but one convolution instead of s^2 tiny ones: faster when Cout is small
    (a generator's last layer, a discriminator's first layer's input gradient)."""
    (n_h, n_w), (sh, sw) = n, strides
    kh, kw, cin, cout = w.shape

    def index(plans, k):
        start = min(d for _, d in plans)
        size = max(d + len(t) for t, d in plans) - start
        idx = [[k] * size for _ in plans]                   # k: the appended zero tap
        for r, (taps, d) in enumerate(plans):
            for j, t in enumerate(taps):
                idx[r][d - start + j] = t
        return start, size, jnp.asarray(idx)                # [s, size]

    st_h, u_h, idx_h = index(plans_h, kh)
    st_w, u_w, idx_w = index(plans_w, kw)
    wz = jnp.pad(w, ((0, 1), (0, 1), (0, 0), (0, 0)))       # [kh+1, kw+1, Ci, Co]
    # k[u, v, ci, rh, rw, co] = wz[idx_h[rh, u], idx_w[rw, v], ci, co]
    k = wz[idx_h.T[:, None, :, None], idx_w.T[None, :, None, :]]   # [u, v, sh, sw, Ci, Co]
    k = k.transpose(0, 1, 4, 2, 3, 5).reshape(u_h, u_w, cin, sh * sw * cout)
    win = xp[:, lo_pad + st_h:lo_pad + st_h + n_h + u_h - 1,
             lo_pad + st_w:lo_pad + st_w + n_w + u_w - 1]
    y = conv2d(win, k, (1, 1), ((0, 0), (0, 0)))            # [B, n_h, n_w, sh*sw*Co]
    y = y.reshape(xp.shape[0], n_h, n_w, sh, sw, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(xp.shape[0], n_h * sh, n_w * sw, cout)


def _im2col(x, kernel, strides, padding, out_size):
    """[B, oh, ow, kh * kw * Cin]: the input window of every output position, ordered
    (kh, kw, Cin) like a flattened kernel."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, strides, out_size
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    return jnp.concatenate([xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
                            for i in range(kh) for j in range(kw)], -1)


# Stride-1 layers with at least this many input channels take the per-row weight
# gradient when YNNPACK runs the convolutions.
ROWS_MIN_CHANNELS = 8


def _weight_grad_im2col(x, dy, kernel, strides, padding):
    """dW [kh, kw, Cin, Cout]: every input window ([B, oh, ow, kh*kw*Cin], im2col) times
    dy [B, oh, ow, Cout], one matrix product."""
    (kh, kw), cin, cout = kernel, x.shape[-1], dy.shape[-1]
    cols = _im2col(x, kernel, strides, padding, dy.shape[1:3])
    return (cols.reshape(-1, kh * kw * cin).T @ dy.reshape(-1, cout)).reshape(
        kh, kw, cin, cout)


def _weight_grad_rows(x, dy, kernel, strides, padding):
    """dW of a stride-1 layer building only the kw horizontal taps, in row-major order
    [H, B, ow, kw*Cin], so that each kernel row's windows are a contiguous slice: one
    product per kernel row, a third of im2col's copying."""
    (kh, kw), (oh, ow), cin, cout = kernel, dy.shape[1:3], x.shape[-1], dy.shape[-1]
    if strides != (1, 1):
        raise ValueError(f"the 'rows' weight gradient needs stride 1, got {strides}")
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    taps = jnp.concatenate([xp[:, :, j:j + ow] for j in range(kw)], -1)   # [B, Hp, ow, kw*Ci]
    taps = taps.transpose(1, 0, 2, 3)                                     # [Hp, B, ow, kw*Ci]
    dy_rows = dy.transpose(1, 0, 2, 3).reshape(-1, cout)                  # [oh*B*ow, Co]
    return jnp.stack([taps[i:i + oh].reshape(-1, kw * cin).T @ dy_rows
                      for i in range(kh)]).reshape(kh, kw, cin, cout)


def _weight_grad_swapped(x, dy, kernel, strides, padding):
    """dW as one canonical NHWC convolution with the roles swapped: the padded input's
    channels as the batch, its batch as the contracted feature, and dy as the kernel,
    dilated by the stride: dW[i, j, ci, co] = sum_{b, p, q} xp[b, s p + i, s q + j, ci]
    dy[b, p, q, co]."""
    kh, kw = kernel
    lhs = x.transpose(3, 1, 2, 0)                                         # [Ci, H, W, B]
    rhs = dy.transpose(1, 2, 0, 3)                                        # [oh, ow, B, Co]
    out = lax.conv_general_dilated(lhs, rhs, (1, 1), padding, rhs_dilation=strides,
                                   dimension_numbers=_DN)                 # [Ci, >=kh, >=kw, Co]
    return out[:, :kh, :kw].transpose(1, 2, 0, 3)


WEIGHT_GRAD_PATHS = {"im2col": _weight_grad_im2col, "rows": _weight_grad_rows,
                     "swapped": _weight_grad_swapped}
# "products": im2col products, per kernel row for stride-1 layers with Cin >=
# ROWS_MIN_CHANNELS (the choice under YNNPACK convolutions)
FORCEABLE = (*WEIGHT_GRAD_PATHS, "products")
_forced: str | None = None


@contextlib.contextmanager
def forced_weight_grad(path: str | None):
    """Within the block, every `conv2d` traced takes the weight-gradient ``path`` (one of
    FORCEABLE; None: `weight_grad_path`'s choice). For tests and A/B benchmarks."""
    global _forced
    if path is not None and path not in FORCEABLE:
        raise ValueError(f"weight-gradient path {path!r}: one of {FORCEABLE}")
    before, _forced = _forced, path
    try:
        yield
    finally:
        _forced = before


def convolutions_on_ynnpack(options: dict | None = None) -> bool:
    """Whether XLA:CPU hands convolutions to YNNPACK under the compiler ``options``
    (default: `genjax.xla.compiler_options()`): yes unless the YNNPACK fusion-type option
    is set and leaves convolutions out."""
    options = xla.compiler_options() if options is None else options
    return xla.YNN not in options or "CONVOLUTION" in options[xla.YNN]


def weight_grad_path(cin: int, strides, cout: int = 1, kernel=(3, 3)) -> str:
    """How `conv2d` computes dW of a layer with ``cin`` -> ``cout`` channels, ``kernel``
    and ``strides``: one of WEIGHT_GRAD_PATHS. By measurement of whole training steps on
    2-core CPUs (`benchmarks.xla_cpu_options`): with XLA's own (Eigen) convolutions,
    genjax's CPU default, the swapped-role convolution for every kernel larger than 1x1
    (a 1x1 kernel's im2col is the input itself: one matrix product); with YNNPACK's,
    whose swapped-role convolution is slow, im2col products (per kernel row for stride-1
    layers with cin >= ROWS_MIN_CHANNELS). Timed one layer at a time the swapped
    convolution loses on some wide 28x28 layers, but in the whole U-Net step taking it
    everywhere was 1.26x faster than products everywhere and 1.13x faster than a
    per-layer mix. `forced_weight_grad` overrides the choice."""
    choice = _forced
    if choice is None:
        swap = tuple(kernel) != (1, 1) and not convolutions_on_ynnpack()
        choice = "swapped" if swap else "products"
    if choice != "products":
        return choice
    return "rows" if tuple(strides) == (1, 1) and cin >= ROWS_MIN_CHANNELS else "im2col"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, w, strides=(1, 1), padding=((0, 0), (0, 0))):
    """x [B, H, W, Cin], w [kh, kw, Cin, Cout] -> [B, H', W', Cout]: the correlation of
    the input, zero-padded by ``padding`` (explicit (lo, hi) pairs), with w at
    ``strides``, as ``lax.conv_general_dilated``; the gradients are computed as this
    module's docstring says."""
    return _lax_conv(x, w, strides, padding)


def _fwd(x, w, strides, padding):
    return conv2d(x, w, strides, padding), (x, w)


def _bwd(strides, padding, res, dy):
    x, w = res
    kh, kw, cin, cout = w.shape
    dw = WEIGHT_GRAD_PATHS[weight_grad_path(cin, strides, cout, (kh, kw))](
        x, dy, (kh, kw), tuple(strides), padding)
    # dx[u] = sum_t w[t] dy_dilated[u + pl - t]: a dilated correlation of dy with the
    # flipped, transposed kernel, padded by k - 1 - pl
    lo = (kh - 1 - padding[0][0], kw - 1 - padding[1][0])
    w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)                      # [kh, kw, Co, Ci]
    dx = dilated_correlation(dy, w_t, strides, lo, _ceil_to(x.shape[1:3], strides))
    return dx[:, :x.shape[1], :x.shape[2]], dw.astype(w.dtype)


def _ceil_to(size, strides):
    return tuple(-(-n // s) * s for n, s in zip(size, strides))


conv2d.defvjp(_fwd, _bwd)


def conv_transpose2d(x, w, strides=(2, 2), padding="SAME"):
    """``lax.conv_transpose(x, w, strides, padding)`` (NHWC, HWIO, transpose_kernel=False):
    x [B, H, W, Cin] -> [B, s*H, s*W, Cout] for "SAME", by the sub-pixel phases of
    `dilated_correlation` (gradients through `conv2d`)."""
    kernel = w.shape[:2]
    pads = transpose_padding(padding, kernel, strides)
    # out = (H - 1) * s + 1 + lo + hi - k + 1 per axis (the dilated, padded input, VALID)
    out = tuple((n - 1) * s + 1 + lo + hi - k + 1
                for n, s, (lo, hi), k in zip(x.shape[1:3], strides, pads, kernel))
    full = _ceil_to(out, strides)
    y = dilated_correlation(x, w, strides, tuple(p[0] for p in pads), full)
    return y[:, :out[0], :out[1]]


def native() -> bool:
    """True off CPUs: the layers then use XLA's own convolutions and their gradients."""
    return jax.default_backend() != "cpu"


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class _ConvLayer(nnx.Module):
    """The parameters of nnx.Conv / nnx.ConvTranspose: kernel [kh, kw, Cin, Cout] and
    bias [Cout], initialised in the same order from the same streams."""

    def __init__(self, in_features: int, out_features: int, kernel_size, strides=1, *,
                 padding="SAME", use_bias: bool = True,
                 kernel_init=nnx.initializers.lecun_normal(),
                 bias_init=nnx.initializers.zeros_init(), rngs: nnx.Rngs):
        self.kernel_size, self.strides, self.padding = _pair(kernel_size), _pair(strides), padding
        self.kernel = nnx.Param(kernel_init(rngs.params(),
                                            self.kernel_size + (in_features, out_features)))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,))) if use_bias else None


class Conv(_ConvLayer):
    """nnx.Conv for 2-D NHWC inputs (kernel [kh, kw, Cin, Cout], bias [Cout]) computed by
    `conv2d`."""

    def __call__(self, x):
        pads = conv_padding(self.padding, self.kernel_size, self.strides, x.shape[1:3])
        conv = _lax_conv if native() else conv2d
        y = conv(x, self.kernel[...], self.strides, pads)
        return y if self.bias is None else y + self.bias[...]


class ConvTranspose(_ConvLayer):
    """nnx.ConvTranspose (transpose_kernel=False) for 2-D NHWC inputs, computed by
    `conv_transpose2d`; "SAME" multiplies the spatial size by the stride."""

    def __call__(self, x):
        if native():
            y = lax.conv_transpose(x, self.kernel[...], self.strides, self.padding,
                                   dimension_numbers=_DN)
        else:
            y = conv_transpose2d(x, self.kernel[...], self.strides, self.padding)
        return y if self.bias is None else y + self.bias[...]
