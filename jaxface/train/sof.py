"""SofGAN geometry branch: the Semantic Occupancy Field trained as an auto-decoder on multi-view label maps.

Data: the synthetic world's multi-view label renders (data/multiview.py), cached; each batch element is one
(instance, training view) with `rays_per_view` random pixels (0 = the whole view, as released).
Step: render the rays with the instance's code (models/sof.py: sphere start + 10 learned steps + label head) and
minimise, as released:
  200 · CE(logits, labels) + 1 · mean(z²) + 10 · mean(min(depth, 0)²)
(the release writes the last weight as reg_weight 1e-3 times an internal 1e4). Adam over everything, codes
included (the release's lr is 5e-5; the CPU presets use more).
Evaluate: held-out-view mIoU of the training instances (views never trained on), via eval/segmentation.py.
`load_sof(workdir)` (jaxface/runs/sof.py) gives a `SOFModel` (frozen networks + code table) for sampling,
inversion and rendering.
"""


import jax
import jax.numpy as jnp
import optax

from jaxface.data import multiview
from jaxface.errors import ConfigError
from jaxface.losses.sof import losses
from jaxface.models.sof import SOF
from jaxface.runs.sof import network, rays_of, render_labels

EVALS = ("sof",)  # evaluators when the config names none (jaxface/train/evaluators.py)


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
  validate(config)
  data = multiview.load(config)
  return multiview.RayBatches(data, config.batch_size, config.multiview.rays_per_view, config.seed,
                              jax.process_index(), jax.process_count(), config.multiview.balance,
                              config.multiview.balance_after)


def samples(config):
  """Label-map renders of the first instances' first held-out view, [N, R, R, 3] in [-1, 1]."""
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


# ------------------------------------------------------------------------------------------------- rendering
