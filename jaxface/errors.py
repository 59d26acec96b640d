"""Errors a user can cause, and what to do about them.

Anything a user can get wrong (a path, an image, a config key, a missing asset, an incompatible
checkpoint) raises `UserError` with what went wrong and what to do instead. `jaxface.main` and the
other CLIs print its message without a traceback and exit with code 2. Bugs stay tracebacks.
"""

import functools
import sys


class UserError(Exception):
  """Something the user can fix. The message says what went wrong and what to do."""


class ConfigError(UserError):
  """A bad config value or key."""


class DataError(UserError):
  """Missing, unreadable or unsuitable data."""


class AssetError(UserError):
  """A missing or broken asset (weights, face model, registry package)."""


class CheckpointError(UserError):
  """A checkpoint that cannot be restored into the current run."""


EXIT_USER_ERROR = 2


def cli(main_fn):
  """Wraps a CLI entry point: a UserError prints `error: <message>` and exits 2, no traceback."""

  @functools.wraps(main_fn)
  def wrapper(*args, **kwargs):
    try:
      return main_fn(*args, **kwargs)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)

  return wrapper
