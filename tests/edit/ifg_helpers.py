"""The InterFaceGAN command run in this process, as the tests of its CLI call it."""

import pytest

from jaxface import interfacegan as cli_mod


def run(*argv):
  assert cli_mod.main([str(a) for a in argv]) == 0


def run_error(capsys, *argv):
  """Runs the CLI in-process expecting a user error: exit code 2, `error: ...` on stderr, no traceback."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    cli_mod.main([str(a) for a in argv])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.startswith("error: ") and "Traceback" not in err, err
  return err
