"""SofGAN geometry branch: the Semantic Occupancy Field trained as an auto-decoder on multi-view label maps.

Data: the synthetic world's multi-view label renders (data/multiview.py), cached; each batch element is one
(instance, training view) with `rays_per_view` random pixels (0 = the whole view, as released).
Step: render the rays with the instance's code (models/sof.py: sphere start + 10 learned steps + label head) and
minimise, as released:
  200 · CE(logits, labels) + 1 · mean(z²) + 10 · mean(min(depth, 0)²)
(the release writes the last weight as reg_weight 1e-3 times an internal 1e4). Adam over everything, codes
included (the release's lr is 5e-5; the CPU presets use more).
Evaluate: held-out-view mIoU of the training instances (views never trained on), via eval/segmentation.py.
`load_sof(workdir)` gives a `SOFModel` (frozen networks + code table) for sampling, inversion and rendering.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxface.errors import ConfigError
from jaxface.models.sof import SOF
from jaxface.render import raymarch


def num_classes():
  from jaxface.data import synthetic
  return len(synthetic.CLASSES)


def network(config):
  m = config.model
  return SOF(num_instances=config.multiview.num_instances, num_classes=num_classes(), latent_dim=m.latent_dim,
             width=m.width, hyper_hidden=m.hyper_hidden, head_hidden=m.head_hidden, step_hidden=m.step_hidden,
             steps=m.steps, radius=m.radius, center=tuple(float(c) for c in m.center), jitter=m.jitter)


def validate(config):
  if config.data.kind != "synthetic":
    raise ConfigError(f"configs/sof.py trains on the synthetic world's multi-view label maps; data.kind="
                      f"{config.data.kind!r} has none. Use --config.data.kind=synthetic.")
  if config.multiview.num_instances < 1 or config.multiview.num_views < 2:
    raise ConfigError("config.multiview needs num_instances >= 1 and num_views >= 2.")
  if config.model.steps < 0 or config.model.radius <= 0:
    raise ConfigError(f"config.model.steps must be >= 0 and radius > 0; got {config.model.steps}, "
                      f"{config.model.radius}.")
  if len(config.model.center) != 3:
    raise ConfigError(f"config.model.center must be 3 numbers, got {config.model.center}.")


def optimizer(config):
  o = config.optim
  lr = o.lr
  if o.final_lr_fraction < 1.0:  # the release keeps lr constant; short CPU runs end better with a decay
    lr = optax.cosine_decay_schedule(o.lr, config.total_steps, alpha=o.final_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip) if o.grad_clip > 0 else optax.identity(),
                     optax.adam(lr, b1=o.b1, b2=o.b2))


def rays_of(batch, orthographic):
  """Per-element rays of a batch: origins, dirs [B,N,3]."""
  return jax.vmap(lambda uv, k, c: raymarch.rays(uv, k, c, orthographic))(batch["uv"], batch["k"], batch["c2w"])


def losses(out, z, labels, lc):
  """The released objective's terms (means over rays / code entries) and the weighted total."""
  ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
  latent = jnp.mean(z ** 2)
  depth = jnp.mean(jnp.minimum(out["depth"], 0.0) ** 2)
  total = lc.w_ce * ce + lc.w_latent * latent + lc.w_depth * depth
  return total, {"loss_ce": ce, "loss_latent": latent, "loss_depth": depth}


# ------------------------------------------------------------------------------------------------- state

def init_state(config, rng):
  validate(config)
  net = network(config)
  o = jnp.zeros((1, 4, 3)).at[..., 2].set(-10.0)
  d = jnp.zeros((1, 4, 3)).at[..., 2].set(1.0)
  params = net.init(rng, jnp.zeros((1,), jnp.int32), o, d, jnp.eye(4)[None])["params"]
  return {"params": params, "opt": optimizer(config).init(params), "step": jnp.zeros((), jnp.int32)}


def phase(config, step):
  del config, step
  return None


def train_step(config):
  net = network(config)
  tx = optimizer(config)
  lc, ortho = config.loss, bool(config.multiview.orthographic)

  def step(state, batch, rng, phase):
    del phase
    key = jax.random.fold_in(rng, state["step"])
    origins, dirs = rays_of(batch, ortho)

    def loss_fn(params):
      z = params["codes"][batch["inst"]]
      out = net.apply({"params": params}, z, origins, dirs, batch["c2w"], key, method=SOF.render)
      total, terms = losses(out, z, batch["labels"], lc)
      return total, (terms, (out["logits"].argmax(-1) == batch["labels"]).mean())

    (loss, (terms, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, **terms, "pixel_acc": acc, "grad_norm": optax.tree.norm(grads)}
    return dict(state, params=params, opt=opt, step=state["step"] + 1), metrics

  return step


def make_data(config):
  from jaxface.data import multiview
  validate(config)
  data = multiview.load(config)
  return multiview.RayBatches(data, config.batch_size, config.multiview.rays_per_view, config.seed,
                              jax.process_index(), jax.process_count(), config.multiview.balance,
                              config.multiview.balance_after)


def samples(config):
  """Label-map renders of the first instances' first held-out view, [N, R, R, 3] in [-1, 1]."""
  from jaxface.data import multiview
  data = multiview.load(config)
  n = min(config.log.num_samples, config.multiview.num_instances)
  view = data["heldout_views"][0] if len(data["heldout_views"]) else 0
  net, res = network(config), config.data.resolution
  c2w = jnp.asarray(data["c2w"][:n, view])
  palette = jnp.asarray(multiview.PALETTE, jnp.float32) / 127.5 - 1.0

  def fn(state):
    labels = render_labels(net, state["params"], state["params"]["codes"][:n], c2w, data["k"], res,
                           config.multiview.orthographic)
    return palette[labels]

  return fn


def evaluate(config, state, workdir):
  del workdir
  model = SOFModel(config, jax.device_get(state["params"]), int(state["step"]))
  from jaxface.eval import sof as sof_eval
  return sof_eval.heldout_view_miou(model, config.eval.num_instances)


# ------------------------------------------------------------------------------------------------- rendering

def render_labels(net, params, z, c2w, k, res, orthographic=False):
  """Argmax label maps [B, R, R] of codes z [B, latent] from cameras c2w [B, 4, 4] (jittable)."""
  return render_logits(net, params, z, c2w, k, res, orthographic).argmax(-1).reshape(z.shape[0], res, res)


def render_logits(net, params, z, c2w, k, res, orthographic=False):
  """Logits [B, R*R, C] of full views (no jitter)."""
  uv = jnp.asarray(raymarch.pixel_grid(res, res))
  k = jnp.asarray(k, jnp.float32)
  origins, dirs = jax.vmap(lambda c: raymarch.rays(uv, k, c, orthographic))(c2w)
  return net.apply({"params": params}, z, origins, dirs, c2w, None, method=SOF.render)["logits"]


@dataclasses.dataclass
class SOFModel:
  """A trained SOF: frozen parameters, the learned code table and its training data's camera set-up.
  `labels(z, c2w)` renders label maps [B, R, R] at the training resolution (or `res`)."""
  config: ml_collections.ConfigDict
  params: dict
  step: int

  def __post_init__(self):
    self.net = network(self.config)
    self.num_classes = num_classes()
    self.res = int(self.config.data.resolution)
    self.orthographic = bool(self.config.multiview.orthographic)
    self._render = jax.jit(lambda p, z, c, k, res: render_logits(self.net, p, z, c, k, res, self.orthographic),
                           static_argnums=(4,))

  @property
  def codes(self):
    return np.asarray(self.params["codes"])

  def intrinsics(self, res=None):
    from jaxface.data import synthetic_factors as sf
    res = res or self.res
    f = sf.as_world_config(self.config.data).focal * res / 256.0
    return np.array([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1]], np.float32)

  def logits(self, z, c2w, res=None, chunk=8):
    """Logits [B, R, R, C] for codes [B, latent] and cameras [B, 4, 4], rendered `chunk` views at a time."""
    res = res or self.res
    z, c2w = np.asarray(z, np.float32), np.asarray(c2w, np.float32)
    m = self.config.model
    raymarch.check_camera(c2w, m.radius, tuple(m.center))  # a camera inside or facing away from the head: UserError
    outs = []
    for s in range(0, len(z), chunk):
      zc, cc = z[s:s + chunk], c2w[s:s + chunk]
      pad = chunk - len(zc)  # fixed shapes: one compile per (chunk, res)
      zc = np.concatenate([zc, np.repeat(zc[-1:], pad, 0)])
      cc = np.concatenate([cc, np.repeat(cc[-1:], pad, 0)])
      out = np.asarray(self._render(self.params, zc, cc, self.intrinsics(res), res))
      outs.append(out[:chunk - pad])
    return np.concatenate(outs).reshape(len(z), res, res, -1)

  def labels(self, z, c2w, res=None):
    return self.logits(z, c2w, res).argmax(-1)


def load_sof(workdir, step=None):
  """A trained SOF (`SOFModel`) from a configs/sof.py workdir: config.json + the newest checkpoint."""
  from jaxface.train import rnet as rnet_lib
  config, state, step = rnet_lib.read_checkpoint(workdir, step, trainer="sof")
  return SOFModel(config, jax.tree.map(jnp.asarray, state["params"]), step)
