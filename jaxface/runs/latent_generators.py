"""The generators InterFaceGAN edits, picked by what a folder holds: `load(workdir)` -> a `LatentGenerator`
(runs/latent_codes.py) with the Z / W / W+ paths, whichever trainer made it.

  config.json trainer "stylegan2"   a StyleGAN2 training workdir -> runs/stylegan2.py's LoadedGenerator
  config.json trainer "disco"       a DiscoFaceGAN training workdir or an exported folder (config.json +
                                    weights.npz) -> runs/disco_latents.py's DiscoLatents
  no folder (None)                  the bundled DiscoFaceGAN reference generator, pretrained/disco_cpu64
"""

from jaxface import pretrained
from jaxface.errors import CheckpointError, ConfigError
from jaxface.runs import disco_latents, stylegan2
from jaxface.runs.workdir import read_config

LOADERS = {"stylegan2": stylegan2.load_generator, "disco": disco_latents.load}
DEFAULTS = {"stylegan2": stylegan2.TRUNCATION_PSI, "disco": disco_latents.TRUNCATION_PSI}  # truncation psi


def kind(workdir):
  """The trainer that made `workdir` ("stylegan2" or "disco"), from its config.json."""
  trainer = read_config(workdir).get("trainer")
  if trainer not in LOADERS:
    raise ConfigError(f"{workdir!r} was trained by trainer {trainer!r}; InterFaceGAN editing needs a generator with "
                      f"a mapping network, supported: {', '.join(LOADERS)} (a configs/stylegan2.py or "
                      f"configs/disco.py workdir, or a folder written by `python -m jaxface.pretrained`).")
  return trainer


def load(workdir=None, step=None, truncation_psi=None, **kwargs):
  """The `LatentGenerator` of `workdir` (None: the bundled reference generator) at its newest or given step.
  truncation_psi None: the kind's default (StyleGAN2 0.7 as the original, DiscoFaceGAN 1.0); other keyword
  arguments (truncation_layers, batch_size) go to the kind's loader, None ones left to its defaults."""
  if workdir is None:
    if not pretrained.is_export(pretrained.REFERENCE):
      raise CheckpointError(f"the bundled reference generator is missing from {pretrained.REFERENCE!r} (a checkout "
                            f"without pretrained/?); pass -w with a training workdir or an exported folder.")
    workdir = pretrained.REFERENCE
  name = kind(workdir)
  if step is not None and pretrained.is_export(workdir):
    raise ConfigError(f"--step {step}: {workdir!r} is an exported generator, which holds one step; drop --step.")
  psi = DEFAULTS[name] if truncation_psi is None else truncation_psi
  kwargs = {k: v for k, v in kwargs.items() if v is not None}  # unset: the kind's own default
  return LOADERS[name](workdir, step=step, truncation_psi=psi, **kwargs)
