"""How jaxface compiles its programs: `jit` is jax.jit with the XLA options every hot program uses.

On CPU that is YNNPACK fusions off (XLA:CPU's `xla_cpu_experimental_ynn_fusion_type`), per program, so nothing
else in the process changes:
  speed     the fusions route convolutions and their neighbours through YNNPACK, which on the training steps is
            the slower path: 1.4x fewer img/s for the world64 StyleGAN2 step on a 2-core x86 CPU (the bench rows of
            docs/results_disco.md, "CPU speed");
  exactness jax 0.10's XLA:CPU miscompiles some of these fusions (BlazeFace returns wrong boxes under jax.jit).
Accelerators get no options.

`materialize(x)` makes x computed once, before its consumers, where XLA would otherwise fuse its producers into
each of them (see its docstring).
"""

import jax
import jax.numpy as jnp
from jax import lax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def options():
  """The compiler options of this process's default backend."""
  return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fn, **kwargs):
  """jax.jit(fn, **kwargs) compiled with `options()` (explicit compiler_options win)."""
  opts = options()
  if opts:
    kwargs.setdefault("compiler_options", opts)
  return jax.jit(fn, **kwargs)


def materialize(x):
  """x, computed once where the program reads it at several offsets (neighbour differences, shifted slices).

  XLA fuses cheap elementwise producers into every consumer, and a consumer that reads x at k offsets (a slice
  per neighbour) evaluates the whole producer chain k times per element: the synthetic world's antialiasing
  pass read its shaded colour 9 times per pixel that way (shading, background waves and gamma included). On CPU,
  x goes through a product with the identity over its last axis, which XLA keeps as its own operation (exact in
  float32 for finite x); other backends get x unchanged."""
  if jax.default_backend() != "cpu":
    return x
  return jnp.einsum("...c,cd->...d", x, jnp.eye(x.shape[-1], dtype=x.dtype), precision=lax.Precision.HIGHEST)
