"""2-D convolution as three functions closed under differentiation: every derivative of every order is again one
of the three, in a form XLA:CPU runs through its fast (Eigen) convolution.

  conv(x, w)                   y[n,a,b,o] = sum_{i,j,c} xp[n, s·a+i, s·b+j, c] · w[i,j,c,o]   (xp: x padded)
  conv_transpose(y, w)         its adjoint in x: what autodiff calls the input gradient (also the stride-s up-conv)
  conv_weight_grad(x, y)       its adjoint in w: the weight gradient

  d conv           = (conv_transpose(dy, w),  conv_weight_grad(x, dy))
  d conv_transpose = (conv(c, w),             conv_weight_grad(c, y))
  d conv_weight_grad = (conv_transpose(y, c), conv(x, c))

Why not XLA's own derivatives: the weight gradient of a strided or input-dilated convolution is a convolution whose
"kernel" (the output gradient) is larger than its "input" once padding is moved into the window. XLA's
ConvOperandSwapper then swaps the operands and reverses the window, and XLA:CPU's Eigen path takes no reversed
windows, so it falls back to a naive loop: 0.8 s instead of a few ms for one 64x64x64 layer of the R1
double-backward, 60x slower for the weight gradient of a transposed conv. Here the weight gradient pads its input
explicitly (the input then stays larger than the kernel, so nothing is swapped), and the double-backward of R1 and
path-length regularization is built from the same three fast forms.

Layout NHWC, kernels HWIO, equal strides in both spatial axes; padding ((top, bottom), (left, right)).

`Conv` is Flax's `nn.Conv` computed by `conv_general_dilated`, the drop-in for `lax.conv_general_dilated`: it runs
these forms, and convolutions with a tiny output (<= SMALL_OUTPUT positions, the last stages of the expert ResNets)
as one matrix product over gathered patches instead. There XLA:CPU's convolution runs at a few GFLOP/s, and the input gradient
of a 3x3 512->512 conv on a 2x2 map took 0.58 s against 18 ms as patches (batch 32).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

CONV_LAYOUT = ("NHWC", "HWIO", "NHWC")
SMALL_OUTPUT = 4  # output positions (Ho·Wo) up to which a convolution runs as a patch matrix product


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, w, stride=1, padding=((0, 0), (0, 0))):
  """Correlation of x [N,H,W,I] with w [kh,kw,I,O] at `stride` after zero `padding`: [N,Ho,Wo,O]."""
  return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=CONV_LAYOUT)


def _conv_fwd(x, w, stride, padding):
  return conv(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, res, dy):
  x, w = res
  return (conv_transpose(dy, w, stride, padding, x.shape[1:3]),
          conv_weight_grad(x, dy, stride, padding, w.shape[:2]))


conv.defvjp(_conv_fwd, _conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_transpose(y, w, stride, padding, in_hw):
  """The adjoint of `conv(., w, stride, padding)` on inputs of spatial size `in_hw`: y [N,Ho,Wo,O] -> [N,H,W,I].
  One input-dilated convolution with the flipped, in/out-swapped kernel."""
  kh, kw = w.shape[:2]
  pads = []
  for n, k, size_out, (lo, _) in zip(in_hw, (kh, kw), y.shape[1:3], padding):
    pads.append((k - 1 - lo, n - (size_out - 1) * stride + lo - 1))
  w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  return lax.conv_general_dilated(y, w_t, (1, 1), pads, lhs_dilation=(stride, stride),
                                  dimension_numbers=CONV_LAYOUT)


def _conv_transpose_fwd(y, w, stride, padding, in_hw):
  return conv_transpose(y, w, stride, padding, in_hw), (y, w)


def _conv_transpose_bwd(stride, padding, in_hw, res, c):
  y, w = res
  return conv(c, w, stride, padding), conv_weight_grad(c, y, stride, padding, w.shape[:2])


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_weight_grad(x, y, stride, padding, k_hw):
  """The adjoint of `conv(x, ., stride, padding)`: x [N,H,W,I], y [N,Ho,Wo,O] -> [kh,kw,I,O]. A convolution over
  the batch (x's channels as its batch, y as a window dilated by the stride) of the explicitly padded x."""
  (t, b), (l, r) = padding
  if tuple(k_hw) == (1, 1) and stride == 1 and not any(padding[0] + padding[1]):  # a plain matrix product
    return jnp.einsum("nhwi,nhwo->io", x, y)[None, None]
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (t, b, 0), (l, r, 0), (0, 0, 0)))
  if jax.default_backend() == "cpu":
    xp, spec = _batch_to_minor(xp), "NHWC"
  else:
    spec = "CHWN"
  g = lax.conv_general_dilated(xp, y, (1, 1), "VALID", rhs_dilation=(stride, stride),
                               dimension_numbers=(spec, "IHWO", "NHWC"))  # [I, >=kh, >=kw, O]
  return g[:, :k_hw[0], :k_hw[1]].transpose(1, 2, 0, 3)


def _conv_weight_grad_fwd(x, y, stride, padding, k_hw):
  return conv_weight_grad(x, y, stride, padding, k_hw), (x, y)


def _conv_weight_grad_bwd(stride, padding, k_hw, res, c):
  x, y = res
  return conv_transpose(y, c, stride, padding, x.shape[1:3]), conv(x, c, stride, padding)


conv_weight_grad.defvjp(_conv_weight_grad_fwd, _conv_weight_grad_bwd)


def _batch_to_minor(x):
  """[N,H,W,C] -> [C,H,W,N], the layout the weight gradient's convolution reads, as a product with the N x N
  identity (exact in float32 for finite x). XLA:CPU fuses the elementwise producers of a transpose (bias,
  activation, padding, the FIR filter) into it and then runs it 5-15x slower than a plain transpose; a dot takes
  no fused producers, so x is written once in its own order and the transposition is a cheap N-wide GEMM."""
  return jnp.einsum("nhwc,nm->chwm", x, jnp.eye(x.shape[0], dtype=x.dtype), precision=lax.Precision.HIGHEST)


def patches_conv(x, w, stride=1, padding=((0, 0), (0, 0))):
  """`conv` as a matrix product: the kh·kw shifted, strided views of padded x side by side in channels, times w
  reshaped to [kh·kw·I, O]. Its derivatives (pads, slices, matrix products) are all cheap at small spatial sizes."""
  kh, kw, c_in, c_out = w.shape
  ho, wo = output_size(x.shape[1:3], (kh, kw), stride, padding)
  if ho <= 0 or wo <= 0:  # the kernel exceeds the padded map: an empty output, as lax gives
    return jnp.zeros((x.shape[0], max(ho, 0), max(wo, 0), c_out), jnp.result_type(x, w))
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  views = [xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] for i in range(kh)
           for j in range(kw)]
  return jnp.einsum("nhwk,ko->nhwo", jnp.concatenate(views, -1), w.reshape(kh * kw * c_in, c_out))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`'s signature for Flax's `nn.Conv`, restricted to what this module computes: NHWC
  input, HWIO kernel, equal strides, no dilation, one group, default precision. Outputs of <= SMALL_OUTPUT
  positions go through `patches_conv`, the rest through `conv`."""
  layout = lax.conv_dimension_numbers(lhs.shape, rhs.shape, CONV_LAYOUT)
  unsupported = {"layout": lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != layout,
                 "unequal strides": len(set(window_strides)) != 1,
                 "dilation": any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))),
                 "groups": feature_group_count != 1, "precision": precision is not None,
                 "preferred_element_type": preferred_element_type is not None}
  if any(unsupported.values()):
    raise ValueError(f"models.conv covers NHWC/HWIO, equal strides, no dilation or groups; got "
                     f"{[k for k, v in unsupported.items() if v]}: use lax.conv_general_dilated for this layer")
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  stride, padding = window_strides[0], tuple(tuple(p) for p in padding)
  ho, wo = output_size(lhs.shape[1:3], rhs.shape[:2], stride, padding)
  return (patches_conv if ho * wo <= SMALL_OUTPUT else conv)(lhs, rhs, stride, padding)


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)  # every model's nn.Conv


def output_size(in_hw, k_hw, stride, padding):
  """Spatial output size of `conv`."""
  return tuple((n + lo + hi - k) // stride + 1 for n, k, (lo, hi) in zip(in_hw, k_hw, padding))
