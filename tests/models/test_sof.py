import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxface.models import sof as sof_lib
from jaxface.render import raymarch

SMALL = dict(num_instances=3, num_classes=5, latent_dim=8, width=12, hyper_hidden=16, head_hidden=10,
             step_hidden=9, steps=3, radius=2.0, center=(0.0, 0.0, -0.5), jitter=0.0)


def small_model(**kw):
  return sof_lib.SOF(**{**SMALL, **kw})


def camera_rays(n_views, res=5, dist=6.0):
  k = np.array([[6.0, 0, res / 2], [0, 6.0, res / 2], [0, 0, 1]], np.float32)
  uv = jnp.asarray(raymarch.pixel_grid(res, res))
  c2w = jnp.stack([raymarch.yaw_pitch_c2w(0.3 * i - 0.3, 0.1 * i, dist) for i in range(n_views)])
  o, d = jax.vmap(lambda c: raymarch.rays(uv, k, c))(c2w)
  return o, d, c2w


def init(model, seed=0):
  o, d, c2w = camera_rays(1)
  return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1,), jnp.int32), o, d, c2w)["params"]


@pytest.fixture(scope="module")
def params():
  """One initialisation shared by the tests (SOF's parameters do not depend on `steps`)."""
  return init(small_model(), 1)


def size(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_parameter_counts_match_the_formulas_at_faithful_size():
  """Hypernet outputs 1,024 / 65,792 / 65,792 values per code at width 256."""
  model = sof_lib.SOF(num_instances=4, num_classes=20)
  o, d, c2w = camera_rays(1)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1,), jnp.int32), o, d, c2w))["params"]
  outs = [shapes[f"hyper{i}"]["out"]["kernel"].shape[1] for i in range(3)]
  assert outs == [1024, 65792, 65792]
  for i, (a, b) in enumerate([(3, 256), (256, 256), (256, 256)]):
    assert size(shapes[f"hyper{i}"]) == sof_lib.count_hyper_params(256, 256, a, b)
  assert size(shapes["head"]) == 3 * (256 * 256 + 256 + 512) + 256 * 20 + 20
  assert size(shapes["head"]) == sof_lib.count_head_params(256, 256, 20)
  assert size(shapes["step"]) == sof_lib.count_step_params(256, 256)
  assert shapes["codes"].shape == (4, 256)


def test_hypernet_output_shapes_and_code_init(params):
  model = small_model()
  z = params["codes"]
  assert 0.003 < float(jnp.std(z)) < 0.03  # N(0, 0.01)
  weights = jax.jit(lambda p, z: model.apply({"params": p}, z, method=sof_lib.SOF.phi_weights))(params, z)
  assert [(w.shape, b.shape) for w, b in weights] == [((3, 12, 3), (3, 12)), ((3, 12, 12), (3, 12)),
                                                     ((3, 12, 12), (3, 12))]


# --------------------------------------------------------------------------------- numpy reference

def np_dense(p, x):
  return x @ np.asarray(p["kernel"], np.float64) + (np.asarray(p["bias"], np.float64) if "bias" in p else 0)


def np_ln(x, p=None):
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
  return y if p is None else y * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_render(params, z, o, d, steps, radius, center):
  """Independent float64 re-derivation of SOF.render for one instance (no jitter)."""
  relu = lambda x: np.maximum(x, 0)  # noqa: E731
  layers = []
  for i, (a, b) in enumerate([(3, SMALL["width"]), (SMALL["width"],) * 2, (SMALL["width"],) * 2]):
    hp = params[f"hyper{i}"]
    h = relu(np_ln(np_dense(hp["fc0"], z), hp["ln0"]))
    h = relu(np_ln(np_dense(hp["fc1"], h), hp["ln1"]))
    out = np_dense(hp["out"], h)
    layers.append((out[:a * b].reshape(b, a), out[a * b:]))

  def phi(x):
    for w, bias in layers:
      x = relu(np_ln(x @ w.T + bias))
    return x

  o, d, c = np.asarray(o, np.float64), np.asarray(d, np.float64), np.asarray(center)
  t_close = ((c - o) * d).sum(-1)
  d2 = ((o + t_close[:, None] * d - c) ** 2).sum(-1)
  t = np.where(d2 < radius ** 2, t_close - np.sqrt(np.maximum(radius ** 2 - d2, 0)), t_close)
  x = o + t[:, None] * d
  sp = params["step"]
  for _ in range(steps):
    v = phi(x)
    for i in range(4):
      v = np_dense(sp[f"w{i}"], v) + np_dense(sp[f"b{i}"], d)
      v = relu(v) if i < 3 else v
    x = x + d * v
  h = phi(x)
  for i in range(3):
    h = relu(np_ln(np_dense(params["head"][f"fc{i}"], h), params["head"][f"ln{i}"]))
  return np_dense(params["head"]["out"], h), x


def test_render_matches_an_independent_numpy_reference(params):
  model = small_model()
  z = jax.random.normal(jax.random.key(5), (2, SMALL["latent_dim"]))  # large codes: varied fields
  o, d, c2w = camera_rays(2)
  out = jax.jit(lambda p, z: model.apply({"params": p}, z, o, d, c2w, method=sof_lib.SOF.render))(params, z)
  pnp = jax.tree.map(np.asarray, params)
  for b in range(2):
    logits, x = np_render(pnp, np.asarray(z[b], np.float64), o[b], d[b], SMALL["steps"], SMALL["radius"],
                          SMALL["center"])
    np.testing.assert_allclose(np.asarray(out["points"][b]), x, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(out["logits"][b]), logits, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(np.asarray(out["depth"][b]), np.asarray(raymarch.depth_from_world(x, c2w[b])),
                               atol=1e-4)


def test_instances_are_independent_and_vmap_equals_a_loop(params):
  model = small_model()
  z = jax.random.normal(jax.random.key(1), (3, SMALL["latent_dim"]))
  o, d, c2w = camera_rays(3)
  render = jax.jit(lambda z, o, d, c: model.apply({"params": params}, z, o, d, c, method=sof_lib.SOF.render))
  full = render(z, o, d, c2w)
  z2 = z.at[1].add(3.0)
  moved = render(z2, o, d, c2w)
  np.testing.assert_array_equal(np.asarray(moved["logits"][0]), np.asarray(full["logits"][0]))
  np.testing.assert_array_equal(np.asarray(moved["logits"][2]), np.asarray(full["logits"][2]))
  assert float(jnp.abs(moved["logits"][1] - full["logits"][1]).max()) > 1e-3
  for b in range(3):
    one = render(z[b:b + 1], o[b:b + 1], d[b:b + 1], c2w[b:b + 1])
    np.testing.assert_allclose(np.asarray(one["logits"][0]), np.asarray(full["logits"][b]), atol=1e-5)
  # the training path (codes looked up by instance) is render() of the looked-up codes
  inst = jnp.array([2, 0, 1])
  via_inst = jax.jit(lambda i: model.apply({"params": params}, i, o, d, c2w))(inst)
  via_codes = render(params["codes"][inst], o, d, c2w)
  np.testing.assert_allclose(np.asarray(via_inst["logits"]), np.asarray(via_codes["logits"]), atol=1e-5)


def test_gradients_match_finite_differences(params):
  """d(loss)/d(code) and d(loss)/d(a step-MLP weight) against central differences, in float64."""
  with jax.enable_x64(True):
    model = small_model(steps=2)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    z = jax.random.normal(jax.random.key(2), (1, SMALL["latent_dim"]), jnp.float64)
    o, d, c2w = (jnp.asarray(a, jnp.float64) for a in camera_rays(1))
    labels = jnp.arange(25) % SMALL["num_classes"]

    @jax.jit
    def loss(p, z):
      out = model.apply({"params": p}, z, o, d, c2w, method=sof_lib.SOF.render)
      logp = jax.nn.log_softmax(out["logits"][0])
      return -jnp.take_along_axis(logp, labels[:, None], 1).mean() + 0.1 * jnp.mean(out["depth"] ** 2) * 1e-3

    gp, gz = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, z)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(2):
      v = jnp.asarray(rng.normal(size=z.shape))
      fd = (loss(params, z + eps * v) - loss(params, z - eps * v)) / (2 * eps)
      np.testing.assert_allclose(float((gz * v).sum()), float(fd), rtol=1e-4, atol=1e-7)
    w = params["step"]["w1"]["kernel"]
    v = jnp.asarray(rng.normal(size=w.shape))
    shift = lambda s: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, a: a + s * v if "step" in str(path) and "w1" in str(path) else a, params)
    fd = (loss(shift(eps), z) - loss(shift(-eps), z)) / (2 * eps)
    np.testing.assert_allclose(float((gp["step"]["w1"]["kernel"] * v).sum()), float(fd), rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(gp["step"]["w1"]["kernel"]).max()) > 0  # the marcher is trained through the labels


def test_plane_mode_evaluates_fixed_points(params):
  model = small_model(steps=0)
  z = params["codes"][:1]
  o, d, c2w = camera_rays(1)
  marched = jax.jit(lambda: model.apply({"params": params}, z, o, d, c2w, method=sof_lib.SOF.render))()
  plane = jax.jit(lambda x: model.apply({"params": params}, z, x, method=sof_lib.SOF.plane))(marched["points"])
  np.testing.assert_allclose(np.asarray(plane), np.asarray(marched["logits"]), atol=1e-5)
