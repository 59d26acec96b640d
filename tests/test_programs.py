"""jaxface/programs.py: `materialize` is the identity, and on CPU it keeps a value out of its readers' fusions, so a
value read at several offsets is computed once (what the world renderer's antialiasing needed)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import programs


def test_materialize_is_exactly_the_identity_with_its_gradient():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 5, 7, 3)) * 1e3, jnp.float32)
  np.testing.assert_array_equal(np.asarray(programs.jit(programs.materialize)(x)), np.asarray(x))
  g = jax.grad(lambda x: jnp.sum(jnp.sin(programs.materialize(x))))(x)
  np.testing.assert_array_equal(np.asarray(g), np.asarray(jnp.cos(x)))


def _sine_read_through_slices(fn, x):
  """Whether the optimized program computes the sine inside the computation that slices it (then every shifted
  read evaluates it again)."""
  blocks = programs.jit(fn).lower(x).compile().as_text().split("\n\n")
  return any(" sine(" in b and " slice(" in b for b in blocks)


def test_a_value_read_at_shifted_offsets_is_computed_once():
  x = jnp.zeros((4, 32, 32, 3), jnp.float32)
  neighbours = lambda c: c[:, 1:, 1:] + c[:, :-1, 1:] + c[:, 1:, :-1] + c[:, :-1, :-1]
  assert not _sine_read_through_slices(lambda x: neighbours(programs.materialize(jnp.sin(x) * 2)), x)
  if jax.default_backend() == "cpu":  # the fusion materialize exists to stop
    assert _sine_read_through_slices(lambda x: neighbours(jnp.sin(x) * 2), x)
