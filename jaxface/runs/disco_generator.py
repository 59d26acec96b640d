"""A trained DiscoFaceGAN as a Python object: `Generator.load(workdir)` and its factor sweeps.

  import jaxface
  g = jaxface.Generator.load()                       # the bundled reference generator (pretrained/disco_cpu64)
  g = jaxface.Generator.load("workdirs/disco")       # or a training workdir / exported folder of your own
  images = g.sample(identity=3, expression=0, pose=[0, 30, 0], lighting=5)     # uint8 [1, R, R, 3]

Each factor is an int seed (its z is drawn from N(0, I) with that seed and decoded by the frozen prior) or
explicit λ values: identity [n_id + n_tex], expression [n_exp], pose [3] = (pitch, yaw, roll) in degrees,
lighting [27] SH coefficients; a leading batch axis is optional. λ is what the generator consumes, so explicit
values are exact requests (z magnitudes carry no meaning of their own; λ is physical).
Generation uses the attribute-preserving truncation (identity part of w pulled toward the mean identity on
the first layers; ψ = config.truncation.psi, 1 = off). `sweep` / `write_sweep` make the labelled
identities x values grids of `python -m jaxface.generate` (its CLI).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxface import grid as grid_lib
from jaxface import pretrained
from jaxface.errors import CheckpointError, ConfigError
from jaxface.models import vae as vae_lib
from jaxface.render import mp468_bases
from jaxface.runs import disco
from jaxface.runs import disco_experts as dx
from jaxface.runs.disco_factors import ANGLES, SEED_FACTORS
from jaxface.runs.workdir import read_run


class Generator:
  """A trained DiscoFaceGAN: G_ema, the frozen priors and face model, and the truncation's mean identity w."""

  def __init__(self, config, state, step):
    self.config, self.step = config, step
    self.G = disco.generator(config)
    self.experts = dx.functions(config)
    self.params = jax.tree.map(jnp.asarray, state["G_ema"])
    self.frozen = jax.tree.map(jnp.asarray, dx.restored(state["frozen"]))
    self.resolution = int(config.model.resolution)
    self.noise_dim = int(config.model.noise_dim)
    self.num_ws = self.G.num_ws
    layers = int(config.truncation.layers) or max(1, round(self.num_ws * 8 / 14))  # released: 8 of 14 at 256
    self.trunc_layers = min(layers, self.num_ws)
    self._w_bar = None
    G, experts = self.G, self.experts

    def to_ws(params, frozen, lam, eps, w_bar, psi):
      w = G.apply({"params": params}, dx.generator_input(frozen, lam, eps), method="map")
      lam_id = _identity_only(lam, experts.layout)
      w_id = G.apply({"params": params}, dx.generator_input(frozen, lam_id, jnp.zeros_like(eps)), method="map")
      return attribute_preserving_ws(w, w_id, w_bar, psi, self.trunc_layers, G.num_ws)

    def synthesize(params, ws, noise):
      if noise is None:
        return G.apply({"params": params}, ws, noise_mode="const", method="synthesize")
      return G.apply({"params": params, "noise": noise}, ws, noise_mode="given", method="synthesize")

    def noise_maps(params, n):
      ws = jnp.zeros((n, G.num_ws, G.w_dim), jnp.float32)
      _, state = G.apply({"params": params}, ws, noise_mode="given", method="synthesize", mutable=["noise"])
      return state["noise"]

    self._to_ws = jax.jit(to_ws)
    self._synthesize = jax.jit(synthesize)
    # One program, not the synthesis network op by op (tens of seconds of small compiles at 64²).
    self._noise_maps = jax.jit(noise_maps, static_argnums=1)
    self._decode = jax.jit(experts.decode)

  # --------------------------------------------------------------------------------------------- loading

  @classmethod
  def load(cls, workdir=None, step=None):
    """The newest (or given) checkpoint of a `configs/disco.py` training in `workdir`, or an exported folder
    (`jaxface.pretrained`); no argument: the bundled CPU reference generator (pretrained/disco_cpu64)."""
    if workdir is None:
      if not pretrained.is_export(pretrained.REFERENCE):
        raise CheckpointError(f"the bundled reference generator is missing from {pretrained.REFERENCE!r} (a "
                              f"checkout without pretrained/?); pass a training workdir or an exported folder.")
      workdir = pretrained.REFERENCE
    if pretrained.is_export(workdir):
      config, state, step = pretrained.read(workdir)
    else:
      config, state, step = read_run(workdir, step, trainer="disco")
    return cls(config, state, step)

  def measure_with(self, rnet_workdir=None, idnet_workdir=None):
    """Reads images with another jaxface R-Net and/or identity net of the same architecture (configs/rnet.py,
    configs/idnet.py workdirs), e.g. ones trained with render_mix to measure generators; the generator and its
    other experts stay as they are."""
    swaps = {"rnet": (rnet_workdir, dx.rnet_frozen), "idnet": (idnet_workdir, dx.idnet_frozen)}
    frozen = dict(self.frozen)
    for name, (workdir, read) in swaps.items():
      if not workdir:
        continue
      if self.config.experts.source != "synthetic":
        raise ConfigError(f"--{name} swaps in a jaxface-trained expert; this generator's experts are "
                          f"{self.config.experts.source!r} weights.")
      new = read(workdir)
      if dx.tree_shapes(new) != dx.tree_shapes(self.frozen[name]):
        raise ConfigError(f"the {name} in {workdir!r} is not the architecture this generator's {name} has "
                          f"({self.config.experts.bootstrap[name]}); train the measuring {name} from that config.")
      frozen[name] = jax.tree.map(jnp.asarray, new)
    self.frozen = frozen
    return self

  # --------------------------------------------------------------------------------------------- λ

  @property
  def w_bar(self):
    """Mean identity w: E over z_id and ε of map([λ_id, 0, ε]) (released: 50,000 samples)."""
    if self._w_bar is None:
      n = int(self.config.truncation.w_bar_samples)
      key = jax.random.key(1)
      lat = self.experts.latent
      params, G, layout = self.params, self.G, self.experts.layout

      @functools.partial(jax.jit, static_argnums=1)
      def batch_mean(k, m):
        k1, k2 = jax.random.split(k)
        z = {f: jax.random.normal(jax.random.fold_in(k1, i), (m, s)) for i, (f, s) in enumerate(lat.items())}
        lam = self._lambda_from_blocks(self.experts.decode(self.frozen, z))
        eps = jax.random.normal(k2, (m, self.noise_dim))
        w = G.apply({"params": params}, dx.generator_input(self.frozen, _identity_only(lam, layout), eps),
                    method="map")
        return w.mean(0)

      chunk = min(n, 1024)
      means = [batch_mean(jax.random.fold_in(key, i), chunk) for i in range(max(1, n // chunk))]
      self._w_bar = jnp.mean(jnp.stack(means), 0)
    return self._w_bar

  @staticmethod
  def _lambda_from_blocks(blocks):
    return dx.flat_lambda(blocks)

  def random_blocks(self, seed, n):
    """λ blocks of `n` samples whose every factor is drawn with `seed`."""
    lat = self.experts.latent
    z = {f: _z(seed, f, lat, n) for f in lat}
    return {k: np.array(v) for k, v in self._decode(self.frozen, z).items()}  # writable copies

  def factor_blocks(self, factor, seed, n):
    """The λ blocks of one factor ("id", "exp", "gamma", "angle") drawn with `seed`."""
    lat = self.experts.latent
    z = {f: jnp.zeros((n, s)) for f, s in lat.items()}
    z[factor] = _z(seed, factor, lat, n)
    blocks = {k: np.array(v) for k, v in self._decode(self.frozen, z).items()}
    return {b: blocks[b] for b in vae_lib.FACTOR_BLOCKS[factor]}

  def lambdas(self, n=1, seed=0, identity=None, expression=None, pose=None, lighting=None):
    """λ blocks {id, tex, exp, angle, gamma} [n, ...]: unset factors from `seed`, the rest as documented."""
    blocks = self.random_blocks(seed, n)
    lay = self.experts.layout
    for arg, factor in ((identity, "id"), (expression, "exp"), (lighting, "gamma"), (pose, "angle")):
      if arg is None:
        continue
      if isinstance(arg, (int, np.integer)):
        blocks.update(self.factor_blocks(factor, arg, n))
        continue
      a = np.asarray(arg, np.float32)
      a = a[None] if a.ndim == 1 else a
      if factor == "id":
        want = lay.n_id + lay.n_tex
        _check_len(a, want, "identity")
        blocks["id"], blocks["tex"] = _rows(a[:, :lay.n_id], n), _rows(a[:, lay.n_id:], n)
      elif factor == "angle":
        _check_len(a, 3, "pose (pitch, yaw, roll in degrees)")
        blocks["angle"] = _rows(np.deg2rad(a), n)
      else:
        size = lay.n_exp if factor == "exp" else 27
        _check_len(a, size, "expression" if factor == "exp" else "lighting")
        blocks[factor] = _rows(a, n)
    return blocks

  # --------------------------------------------------------------------------------------------- images

  def ws(self, blocks, noise=0, psi=None):
    """Per-layer latents w+ [n, num_ws, w_dim] of λ blocks (truncated with ψ; ψ=1: the mapping's own output).
    noise: seed or ε [n, noise_dim]."""
    lam = jnp.asarray(self._lambda_from_blocks({k: jnp.asarray(v) for k, v in blocks.items()}))
    n = lam.shape[0]
    if isinstance(noise, (int, np.integer)):
      eps = jax.random.normal(jax.random.key(int(noise) + 10_007), (1, self.noise_dim))
      eps = jnp.broadcast_to(eps, (n, self.noise_dim))
    else:
      eps = jnp.asarray(_rows(np.asarray(noise, np.float32).reshape(-1, self.noise_dim), n))
    psi = float(self.config.truncation.psi if psi is None else psi)
    w_bar = self.w_bar if psi != 1.0 else jnp.zeros((self.G.w_dim,), jnp.float32)
    return self._to_ws(self.params, self.frozen, lam, eps, w_bar, psi)

  def synthesize(self, ws, noise=None):
    """Images [n, R, R, 3] in [-1, 1] from w+ [n, num_ws, w_dim]; noise: None = the synthesis network's constant
    maps, or per-sample maps (the "noise" collection, see `noise_maps`; embeddings carry their own)."""
    return self._synthesize(self.params, jnp.asarray(ws, jnp.float32), noise)

  def noise_maps(self, n):
    """The constant noise maps as a per-sample "noise" collection for n samples (the start of an embedding)."""
    return self._noise_maps(self.params, int(n))

  def generate(self, blocks, noise=0, psi=None):
    """Images [n, R, R, 3] in [-1, 1] from λ blocks; noise: seed or ε [n, noise_dim]."""
    return self.synthesize(self.ws(blocks, noise, psi))

  def sample(self, identity=None, expression=None, pose=None, lighting=None, noise=None, n=1, seed=0, psi=None):
    """uint8 images [n, R, R, 3]; see the module docstring for the factor arguments."""
    blocks = self.lambdas(n, seed, identity, expression, pose, lighting)
    img = self.generate(blocks, seed if noise is None else noise, psi)
    return to_uint8(img)

  def render(self, blocks):
    """The 3DMM render of λ blocks (the imitation target), [n, R, R, 3] in [-1, 1]."""
    rendered = disco.render_targets(self.experts, self.frozen, {k: jnp.asarray(v) for k, v in blocks.items()},
                                    self.resolution)
    return rendered["image"] * 2.0 - 1.0


def attribute_preserving_ws(w, w_id, w_bar, psi, layers, num_ws):
  """DiscoFaceGAN's released truncation: ws[l] = w + (1 - psi)·(w_bar - w_id) for l < layers, else w.

  w [B, D] of the full λ ‖ ε; w_id [B, D] of the identity-only input (everything else zero); w_bar [D] the mean
  identity w. Only the identity-dependent part of w moves toward the mean, so pose, expression and light keep
  their offsets. Returns [B, num_ws, D]."""
  ws = jnp.broadcast_to(w[:, None], (w.shape[0], num_ws, w.shape[-1]))
  shift = (1.0 - psi) * (w_bar - w_id)
  layer = (jnp.arange(num_ws) < layers)[None, :, None]
  return ws + jnp.where(layer, shift[:, None], 0.0)


def _z(seed, factor, latent, n):
  """z of one factor for a seed: the same draw whether the other factors share the seed or not."""
  index = list(latent).index(factor)
  return jax.random.normal(jax.random.fold_in(jax.random.key(int(seed)), index), (n, latent[factor]))


def _identity_only(lam, layout):
  """λ with everything but identity (id, tex) zeroed: the released truncation's w_id input."""
  n_keep = layout.n_id + layout.n_tex
  return jnp.concatenate([lam[:, :n_keep], jnp.zeros_like(lam[:, n_keep:])], -1)


def _check_len(a, want, what):
  if a.ndim != 2 or a.shape[-1] != want:
    raise ConfigError(f"{what} values must have {want} entries (optionally a leading batch axis), got shape "
                      f"{a.shape}.")


def _rows(a, n):
  if a.shape[0] == n:
    return a
  if a.shape[0] == 1:
    return np.repeat(a, n, 0)
  raise ConfigError(f"got {a.shape[0]} rows of factor values for {n} samples; pass 1 or {n}.")


def to_uint8(images):
  return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _expression_names(gen):
  if gen.config.experts.source != "synthetic":
    return ()
  return mp468_bases.EXPRESSIONS


def apply_setting(gen, blocks, key, value, rows):
  """Sets one factor of λ blocks [rows, ...] in place: angles in degrees, seeds, or a named expression unit."""
  if key in ANGLES:
    blocks["angle"][:, ANGLES.index(key)] = np.deg2rad(value)
  elif key in SEED_FACTORS:
    blocks.update(gen.factor_blocks(SEED_FACTORS[key], int(value), rows))
  elif key in _expression_names(gen):
    blocks["exp"][:, _expression_names(gen).index(key)] = value
  elif key == "noise":
    pass  # handled by the caller
  else:
    names = list(ANGLES) + list(SEED_FACTORS) + ["noise"] + list(_expression_names(gen))
    raise ConfigError(f"unknown factor {key!r}; valid: {', '.join(names)}.")


def sweep(gen, vary, settings=(), seed=0, rows=4, psi=None):
  """Images [rows, cols, R, R, 3] in [-1, 1]: identity seed+i in row i, `vary` = (key, values) along columns,
  `settings` = ((key, value), ...) fixed everywhere."""
  key, values = vary
  out = []
  for r in range(rows):
    base = gen.lambdas(1, seed + r, identity=seed + r)
    base = {k: np.repeat(v, len(values), 0) for k, v in base.items()}
    noise = seed + r
    for k, v in settings:
      if k == "noise":
        noise = int(v)
      else:
        apply_setting(gen, base, k, v, len(values))
    if key == "noise":
      imgs = [gen.generate({k: v[:1] for k, v in base.items()}, int(v), psi) for v in values]
      out.append(jnp.concatenate(imgs, 0))
      continue
    for c, v in enumerate(values):
      col = {k: x[c:c + 1].copy() for k, x in base.items()}
      apply_setting(gen, col, key, v, 1)
      for k in base:
        base[k][c] = col[k][0]
    out.append(gen.generate(base, noise, psi))
  return jnp.stack(out)


def write_sweep(gen, path, vary, settings=(), seed=0, rows=4, psi=None):
  """Writes the sweep as a labelled PNG: the identity seed of each row, the factor value of each column."""
  key, values = vary
  picture = grid_lib.labelled_grid(sweep(gen, vary, settings, seed, rows, psi),
                                   rows=[f"identity {seed + r}" for r in range(rows)],
                                   cols=[f"{key}={v:.3g}" for v in values], corner=f"identity \\ {key}")
  return grid_lib.save(path, picture)
