"""How jaxface compiles its programs: `jit` is jax.jit with the XLA options every hot program uses.

On CPU that is YNNPACK fusions off (XLA:CPU's `xla_cpu_experimental_ynn_fusion_type`), per program, so nothing
else in the process changes:
  speed     the fusions route convolutions and their neighbours through YNNPACK, which on the training steps is
            the slower path: 1.4x fewer img/s for the world64 StyleGAN2 step on a 2-core x86 CPU (the bench rows of
            docs/results_disco.md, "CPU speed");
  exactness jax 0.10's XLA:CPU miscompiles some of these fusions (BlazeFace returns wrong boxes under jax.jit).
Accelerators get no options.
"""

import jax

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
