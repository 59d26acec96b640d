"""SofGAN's geometry branch: the Semantic Occupancy Field auto-decoder (Chen et al., ACM TOG 2022).

  code z (per training instance, N(0, 0.01) table)
    -> 3 hyper-MLPs, one per layer of phi: z -> [Linear+LN+ReLU] x2 -> Linear -> [W (out x in, row-major) | b]
  phi(x) = 3 x [x @ Wᵀ + b -> LayerNorm (no affine) -> ReLU]       (3 -> width -> width -> width; raw xyz in)
  rays start on a sphere (render/raymarch.sphere_init) and take `steps` learned signed steps:
    x <- x + d · s,  s = StepMLP(phi(x), d)  (bias-free Linears, each with a bias predicted from the ray direction)
  logits = Head(phi(x_final))   (shared across instances: 3 x [Linear+LN+ReLU] + Linear -> classes)
One surface point per ray: no volume rendering. Depth is the final point's camera z. `plane` mode skips the
marcher and evaluates phi + head on given points (volume slices, meshes).

Initialisation follows SRN/SofGAN: Kaiming-normal (fan-in, ReLU) weights, the hyper-MLPs' last layer x0.1.
Biases start at 0 here (PyTorch's default is a small uniform; LayerNorm follows every layer, so it matters
little). Sizes are configurable; faithful = width 256, latent 256, hyper_hidden 256, 10 steps, 20 classes in the
release (the synthetic world has 16: synthetic.CLASSES).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxface.render import raymarch

_HP = jax.lax.Precision.HIGHEST
_kaiming = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
_kaiming_01 = nn.initializers.variance_scaling(2.0 * 0.01, "fan_in", "normal")  # Kaiming x 0.1 (variance x 0.01)


class HyperLinear(nn.Module):
  """Predicts one phi layer's weights and bias from a code: FCBlock(latent -> hidden -> hidden -> in*out+out)."""
  in_dim: int
  out_dim: int
  hidden: int

  @nn.compact
  def __call__(self, z):
    h = z
    for i in range(2):
      h = nn.relu(nn.LayerNorm(epsilon=1e-5, name=f"ln{i}")(nn.Dense(self.hidden, kernel_init=_kaiming,
                                                                       name=f"fc{i}")(h)))
    p = nn.Dense(self.in_dim * self.out_dim + self.out_dim, kernel_init=_kaiming_01, name="out")(h)
    w = p[..., :self.in_dim * self.out_dim].reshape(p.shape[:-1] + (self.out_dim, self.in_dim))
    return w, p[..., self.in_dim * self.out_dim:]


def phi_apply(weights, x):
  """phi on points x [N,3] with predicted layers [(W [out,in], b [out])] of one instance -> features [N,width]."""
  for w, b in weights:
    x = jnp.matmul(x, w.T, precision=_HP) + b
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    x = jax.nn.relu((x - mu) * jax.lax.rsqrt(var + 1e-5))  # LayerNorm without affine
  return x


class StepMLP(nn.Module):
  """Signed step length from a phi feature, conditioned on the ray direction (SofGAN's `self.lstm`, which is
  hyperlayers.Linear: bias-free Linears, each plus a bias Linear(3 -> n)(direction); ReLU between, linear out)."""
  hidden: int
  layers: int = 4

  @nn.compact
  def __call__(self, v, d):
    dims = [self.hidden] * (self.layers - 1) + [1]
    for i, n in enumerate(dims):
      v = nn.Dense(n, use_bias=False, kernel_init=_kaiming, name=f"w{i}")(v) + nn.Dense(n, name=f"b{i}")(d)
      if i < len(dims) - 1:
        v = nn.relu(v)
    return v[..., 0]


class Head(nn.Module):
  """The shared label head (SofGAN's pixel_generator, renderer='FC')."""
  hidden: int
  num_classes: int

  @nn.compact
  def __call__(self, v):
    for i in range(3):
      v = nn.relu(nn.LayerNorm(epsilon=1e-5, name=f"ln{i}")(nn.Dense(self.hidden, kernel_init=_kaiming,
                                                                       name=f"fc{i}")(v)))
    return nn.Dense(self.num_classes, kernel_init=_kaiming, name="out")(v)


class SOF(nn.Module):
  """The SOF auto-decoder. `__call__(inst, origins, dirs, c2w, rng)` renders rays of training instances; `render`
  takes explicit codes (GMM samples, inversion); `plane` evaluates fixed points."""
  num_instances: int
  num_classes: int
  latent_dim: int = 256
  width: int = 256
  hyper_hidden: int = 256
  head_hidden: int = 256
  step_hidden: int = 256
  steps: int = 10
  radius: float = 1.5
  center: tuple = (0.0, 0.0, 0.0)
  jitter: float = 0.01

  def setup(self):
    self.codes = self.param("codes", nn.initializers.normal(0.01), (self.num_instances, self.latent_dim))
    dims = [(3, self.width), (self.width, self.width), (self.width, self.width)]
    self.hyper = [HyperLinear(i, o, self.hyper_hidden, name=f"hyper{n}") for n, (i, o) in enumerate(dims)]
    self.step_mlp = StepMLP(self.step_hidden, name="step")
    self.head = Head(self.head_hidden, self.num_classes, name="head")

  def phi_weights(self, z):
    """Code(s) [..., latent] -> predicted phi layers [(W [..., out, in], b [..., out])] x 3."""
    return [h(z) for h in self.hyper]

  def __call__(self, inst, origins, dirs, c2w, rng=None):
    return self.render(self.codes[inst], origins, dirs, c2w, rng)

  def render(self, z, origins, dirs, c2w, rng=None):
    """Codes z [B,latent], rays origins/dirs [B,N,3], cameras c2w [B,4,4] -> dict(logits [B,N,C], depth [B,N],
    points [B,N,3], hit [B,N]). Each batch element is one instance's rays; `rng` adds the start jitter."""
    weights = self.phi_weights(z)
    keys = jax.random.split(rng, z.shape[0]) if rng is not None else None

    def start(o, d, key):
      return raymarch.sphere_init(o, d, self.radius, self.center, self.jitter, key)

    _, x, hit = jax.vmap(start)(origins, dirs, keys) if keys is not None else jax.vmap(
        lambda o, d: start(o, d, None))(origins, dirs)
    phi = jax.vmap(phi_apply)
    for _ in range(self.steps):  # unrolled: 10 steps, as released (the --tracing_steps flag is ignored there)
      x = x + dirs * self.step_mlp(phi(weights, x), dirs)[..., None]
    logits = self.head(phi(weights, x))
    depth = jax.vmap(raymarch.depth_from_world)(x, c2w)
    return {"logits": logits, "depth": depth, "points": x, "hit": hit}

  def plane(self, z, points):
    """Fixed points (no marching): codes [B,latent], points [B,N,3] -> logits [B,N,C]."""
    return self.head(jax.vmap(phi_apply)(self.phi_weights(z), points))

  def latent_codes(self):
    return self.codes


def count_hyper_params(latent, hidden, in_dim, out_dim):
  """Parameters of one HyperLinear: two Linear+LN(affine) layers, then the output."""
  p = in_dim * out_dim + out_dim
  return (latent * hidden + hidden) + 2 * hidden + (hidden * hidden + hidden) + 2 * hidden + hidden * p + p


def count_head_params(width, hidden, num_classes):
  return (width * hidden + hidden + 2 * hidden) + 2 * (hidden * hidden + hidden + 2 * hidden) + hidden * num_classes \
      + num_classes


def count_step_params(width, hidden, layers=4):
  dims = [width] + [hidden] * (layers - 1) + [1]
  return sum(a * b + (3 * b + b) for a, b in zip(dims[:-1], dims[1:]))
