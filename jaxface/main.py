"""Training: jaxface train --config FILE.py[:ARGS] --workdir DIR [--config.key=value ...]
(the same as python -m jaxface.main ...).

Picks the method named by config.trainer and runs the shared training loop; rerunning the same command resumes
from the newest checkpoint in DIR. Settings are checked before any work starts; a mistake prints
`error: ...` naming the setting and what it accepts, and exits 2.
"""

import sys

from jaxface import cli as cli_lib
from jaxface import config as config_lib
from jaxface.errors import cli


def parse_args(argv):
  parser = cli_lib.parser("jaxface.main", description=__doc__)
  parser.add_argument("--config", required=True, help="config file and optional :ARGS, e.g. configs/disco.py:ffhq256")
  parser.add_argument("--workdir", required=True, help="where checkpoints, metrics, samples and eval results go")
  return parser.parse_known_args(argv)


def main(argv=None):
  return cli(_main)(sys.argv[1:] if argv is None else argv)


def _main(argv):
  args, rest = parse_args(argv)
  overrides = config_lib.parse_overrides(rest)
  import jax
  jax.config.update("jax_threefry_partitionable", True)  # sharded RNG without cross-device traffic
  from jaxface import parallel  # JAX: loaded once the command runs, not for --help
  parallel.enable_compilation_cache()
  parallel.maybe_initialize_distributed()
  config = config_lib.build(args.config, overrides)
  # Every cheap setting is checked here, before a method prepares anything (bootstrapping experts can take
  # minutes), before compilation and before the workdir is created: the shared settings, then the method's own.
  config_lib.validate(config, args.workdir)
  from jaxface.train import loop  # JAX: loaded once the command runs, not for --help
  method = loop.get_method(config)
  if hasattr(method, "validate"):
    method.validate(config)
  loop.train(config, args.workdir)
  return 0


if __name__ == "__main__":
  sys.exit(main())
