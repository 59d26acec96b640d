import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxface import parallel
from jaxface.errors import ConfigError


def test_make_mesh_fills_and_validates():
  mesh = parallel.make_mesh([("data", -1), ("fsdp", 2)])
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
  assert parallel.make_mesh([("data", 1), ("fsdp", 1)]).size == 1  # a fixed subset of one process's devices
  with pytest.raises(ConfigError, match="not divisible"):
    parallel.make_mesh([("data", -1), ("fsdp", 3)])
  with pytest.raises(ConfigError, match="axes"):
    parallel.make_mesh([("fsdp", -1), ("data", 1)])
  with pytest.raises(ConfigError, match="needs 16 devices"):
    parallel.make_mesh([("data", 8), ("fsdp", 2)])


def test_sharding_rules():
  mesh = parallel.make_mesh([("data", 4), ("fsdp", 2)])
  tree = {"G": {"conv": {"weight": jax.ShapeDtypeStruct((3, 3, 64, 128), jnp.float32),
                         "bias": jax.ShapeDtypeStruct((128,), jnp.float32)},
                "odd": jax.ShapeDtypeStruct((3, 5), jnp.float32)},
          "step": jax.ShapeDtypeStruct((), jnp.int32)}
  sh = parallel.infer_shardings(tree, mesh, [("G/conv/bias", "replicate"), (".*", "fsdp")], min_size=100)
  assert sh["G"]["conv"]["weight"].spec == P(None, None, None, "fsdp")  # largest divisible dim
  assert sh["G"]["conv"]["bias"].spec == P()  # explicit replicate rule wins (first match)
  assert sh["G"]["odd"].spec == P()  # nothing divisible by 2... and below min_size
  assert sh["step"].spec == P()
  with pytest.raises(ConfigError, match="unknown sharding rule"):
    parallel.infer_shardings(tree, mesh, [(".*", "tensor")], min_size=0)


def test_to_global_batch_is_split_over_all_devices():
  mesh = parallel.make_mesh([("data", 4), ("fsdp", 2)])
  batch = {"image": np.arange(16 * 2, dtype=np.float32).reshape(16, 2)}
  g = parallel.to_global(batch, mesh)["image"]
  assert g.shape == (16, 2) and len(g.addressable_shards) == 8
  assert all(s.data.shape == (2, 2) for s in g.addressable_shards)
  np.testing.assert_array_equal(np.asarray(g), batch["image"])
  with pytest.raises(ConfigError, match="divisible"):
    parallel.check_batch_size(12, mesh)
