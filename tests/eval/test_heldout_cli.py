"""The shared held-out evaluation CLI: arguments reach load/evaluate, JSON lands where it should."""

import json
import types

from jaxface.eval import heldout


def _run(tmp_path, *extra):
  calls = {}

  def load(workdir, step):
    calls["load"] = (workdir, step)
    return types.SimpleNamespace(step=7 if step is None else step)

  def evaluate(model, num, start):
    calls["evaluate"] = (num, start)
    return {"metric": 0.5, "per_dim": [1, 2]}

  heldout.main(["--workdir", str(tmp_path), *extra], module="t", description="t", workdir_help="w", default_num=16,
               default_start=100, load=load, evaluate=evaluate, shown=lambda r: {"metric": r["metric"]})
  return calls


def test_defaults_write_into_the_workdir(tmp_path, capsys):
  calls = _run(tmp_path)
  assert calls == {"load": (str(tmp_path), None), "evaluate": (16, 100)}
  written = json.loads((tmp_path / "eval" / "heldout_step_7.json").read_text())
  assert written == {"metric": 0.5, "per_dim": [1, 2], "step": 7}
  assert '"per_dim"' not in capsys.readouterr().out  # `shown` filters what is printed, not what is written


def test_explicit_arguments(tmp_path):
  out = tmp_path / "sub" / "r.json"
  calls = _run(tmp_path, "--num", "3", "--start", "5", "--step", "2", "--out", str(out))
  assert calls == {"load": (str(tmp_path), 2), "evaluate": (3, 5)}
  assert json.loads(out.read_text())["step"] == 2
