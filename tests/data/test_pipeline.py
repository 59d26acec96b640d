"""The grain pipeline: order, per-host shards, resume across processes, bad-record handling, to_global."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from ml_collections import ConfigDict
from PIL import Image

from jaxface.data import generated, pipeline, prepare
from jaxface.errors import CheckpointError, ConfigError, DataError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _folder(path, n, n_bad=0, size=(12, 10)):
  """n solid-colour PNGs whose red channel is the image index (exact under any resize), plus broken files."""
  os.makedirs(path, exist_ok=True)
  for i in range(n):
    Image.fromarray(np.full(size + (3,), (i, 255 - i, 128), np.uint8)).save(os.path.join(path, f"img{i:04d}.png"))
  for j in range(n_bad):
    with open(os.path.join(path, f"bad{j:03d}.png"), "wb") as f:
      f.write(b"\x89PNG\r\n\x1a\n truncated")
  return str(path)


def _cfg(path, **kw):
  base = dict(kind="folder", path=path, tfds_name="", split="train", resolution=8, max_bad_fraction=0.01,
              worker_count=0, prefetch=2)
  base.update(kw)
  return ConfigDict(base)


def _ids(batch):
  return [int(v) for v in batch["image"][:, 0, 0, 0]]


def _take(it, n):
  return [_ids(next(it)) for _ in range(n)]


@pytest.fixture(scope="module")
def folder40(tmp_path_factory):
  return _folder(tmp_path_factory.mktemp("f40"), 40)


def test_batches_epochs_and_reshuffle(folder40):
  it = pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=1, process_index=0, process_count=1)
  b = next(it)
  assert set(b) == {"image"} and b["image"].shape == (8, 8, 8, 3) and b["image"].dtype == np.uint8
  assert (b["image"] == b["image"][:, :1, :1]).all()  # solid colours survive crop + resize exactly
  ids = _ids(b) + sum(_take(it, 14), [])
  epochs = [ids[i * 40:(i + 1) * 40] for i in range(3)]
  for e in epochs:  # every epoch is a permutation of the data set ...
    assert sorted(e) == list(range(40))
  assert epochs[0] != epochs[1] != epochs[2]  # ... reshuffled each time
  assert epochs[0] != list(range(40))
  assert it.stats == {"seen": 120, "bad": 0}


def test_hosts_read_disjoint_shards(folder40):
  per_host = []
  for pi in range(2):
    it = pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=1, process_index=pi, process_count=2)
    ids = sum(_take(it, 5), [])  # local batch 4, shard of 20 -> one epoch
    assert sorted(ids) == list(range(pi, 40, 2))  # shard = process_index::process_count
    per_host.append(ids)
  assert sorted(per_host[0] + per_host[1]) == list(range(40))


def test_order_is_a_function_of_the_seed(folder40):
  mk = lambda seed: pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=seed, process_index=0,
                                           process_count=1)
  assert _take(mk(7), 6) == _take(mk(7), 6)
  assert _take(mk(7), 6) != _take(mk(8), 6)


_RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    from ml_collections import ConfigDict
    from jaxface.data import pipeline
    def main():
      cfg = ConfigDict(json.loads(sys.argv[1]))
      it = pipeline.make_iterator(cfg, global_batch_size=8, seed=5, process_index=0, process_count=1)
      it.set_state(json.loads(open(sys.argv[2]).read()))
      out = [[int(v) for v in next(it)["image"][:, 0, 0, 0]] for _ in range(7)]
      print(json.dumps({"ids": out, "stats": it.stats}))
    if __name__ == "__main__":
      main()
""")


def test_resume_in_a_new_process(folder40, tmp_path):
  cfg = _cfg(folder40)
  it = pipeline.make_iterator(cfg, global_batch_size=8, seed=5, process_index=0, process_count=1)
  _take(it, 3)
  state = it.get_state()
  (tmp_path / "state.json").write_text(json.dumps(state))  # must be JSON-serialisable
  expected = _take(it, 7)  # crosses the epoch boundary at batch 5
  script = tmp_path / "resume.py"
  script.write_text(_RESUME_SCRIPT)
  out = subprocess.run([sys.executable, str(script), json.dumps(cfg.to_dict()), str(tmp_path / "state.json")],
                       capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["ids"] == expected
  assert got["stats"] == it.stats


def test_workers_bad_records_and_resume(tmp_path):
  """worker_count=2: bad files are skipped inside workers, counted in the main process, batches stay full,
  and a fresh iterator restored from the state continues with the same batches and counters."""
  path = _folder(tmp_path / "d", 40, n_bad=2)
  cfg = _cfg(path, worker_count=2, max_bad_fraction=0.2)
  it = pipeline.make_iterator(cfg, global_batch_size=8, seed=2, process_index=0, process_count=1)
  try:
    first = _take(it, 6)
    state = json.loads(json.dumps(it.get_state()))
    stats_at_state = it.stats
    rest = _take(it, 6)
    assert all(len(b) == 8 for b in first + rest)
    ids = sum(first + rest, [])
    # Each worker walks its own slice of the shuffled stream and skips its own bad records, so epochs are
    # only approximately aligned in the output; over ~2.3 epochs every image appears 2 or 3 times.
    counts = np.bincount(ids, minlength=40)
    assert len(counts) == 40 and counts.min() >= 2 and counts.max() <= 3
    assert 2 <= it.stats["bad"] <= 4 and it.stats["seen"] == 96 + it.stats["bad"]
  finally:
    it.close()
  it2 = pipeline.make_iterator(cfg, global_batch_size=8, seed=2, process_index=0, process_count=1)
  try:
    it2.set_state(state)
    assert it2.stats == stats_at_state
    assert _take(it2, 6) == rest
    assert it2.stats == it.stats
  finally:
    it2.close()


def test_bad_records_below_the_limit_are_skipped(tmp_path):
  path = _folder(tmp_path / "d", 150, n_bad=1)  # 0.66% bad < 1%
  it = pipeline.make_iterator(_cfg(path), global_batch_size=10, seed=0, process_index=0, process_count=1)
  batches = _take(it, 45)  # three epochs of good images
  assert all(len(b) == 10 for b in batches)
  assert it.stats["bad"] in (2, 3, 4) and it.stats["seen"] == 450 + it.stats["bad"]


def test_too_many_bad_records_raise(tmp_path):
  path = _folder(tmp_path / "d", 40, n_bad=8)
  it = pipeline.make_iterator(_cfg(path), global_batch_size=8, seed=0, process_index=0, process_count=1)
  with pytest.raises(DataError) as e:
    _take(it, 20)
  msg = str(e.value)
  assert "max_bad_fraction" in msg and "%" in msg and "bad0" in msg
  # Judged only once the whole (small) data set was seen: the error cannot come before 48 records.
  assert it.stats["seen"] >= 48


def test_unreadable_data_set_raises_instead_of_hanging(tmp_path):
  path = _folder(tmp_path / "d", 0, n_bad=5)
  it = pipeline.make_iterator(_cfg(path), global_batch_size=2, seed=0, process_index=0, process_count=1)
  with pytest.raises(DataError, match="in a row"):
    next(it)


def test_config_and_path_errors(folder40, tmp_path):
  with pytest.raises(ConfigError, match="multiple of the number of hosts"):
    pipeline.make_iterator(_cfg(folder40), global_batch_size=10, seed=0, process_index=0, process_count=4)
  with pytest.raises(ConfigError, match="power of two"):
    pipeline.make_iterator(_cfg(folder40, resolution=24), global_batch_size=8, seed=0, process_index=0,
                           process_count=1)
  with pytest.raises(ConfigError, match="worker_count"):
    pipeline.make_iterator(_cfg(folder40, worker_count=-1), global_batch_size=8, seed=0, process_index=0,
                           process_count=1)
  with pytest.raises(DataError, match="does not exist"):
    pipeline.make_iterator(_cfg(str(tmp_path / "nope")), global_batch_size=8, seed=0, process_index=0,
                           process_count=1)


def test_restoring_a_state_from_other_settings_is_refused(folder40):
  state = pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=0, process_index=0,
                                 process_count=1).get_state()
  other = pipeline.make_iterator(_cfg(folder40), global_batch_size=16, seed=0, process_index=0, process_count=1)
  with pytest.raises(CheckpointError, match="local_batch_size"):
    other.set_state(state)


def test_generated_kind(tmp_path):
  cfg = _cfg("", kind="generated", resolution=16, num_examples=6)
  it = pipeline.make_iterator(cfg, global_batch_size=3, seed=0, process_index=0, process_count=1)
  renders = [generated.render(i, 16) for i in range(6)]
  got = [next(it)["image"] for _ in range(2)]
  found = sorted(next(i for i, r in enumerate(renders) if (r == img).all()) for b in got for img in b)
  assert found == list(range(6))


def test_arrayrecord_kind_matches_the_folder(folder40, tmp_path):
  prepare.prepare(folder40, str(tmp_path / "ar"), 8, shards=3, progress=False)
  it = pipeline.make_iterator(_cfg(str(tmp_path / "ar"), kind="arrayrecord"), global_batch_size=8, seed=0,
                              process_index=0, process_count=1)
  b = next(it)
  assert b["image"].shape == (8, 8, 8, 3)
  ids = _ids(b) + sum(_take(it, 4), [])
  assert sorted(ids) == list(range(40))


def test_to_global_shards_over_devices(folder40):
  assert jax.device_count() == 8
  mesh = Mesh(np.array(jax.devices()), ("data",))
  it = pipeline.make_iterator(_cfg(folder40), global_batch_size=16, seed=0, process_index=0, process_count=1)
  local = next(it)
  glob = pipeline.to_global(local, NamedSharding(mesh, P("data")))
  arr = glob["image"]
  assert arr.shape == (16, 8, 8, 3) and len(arr.addressable_shards) == 8
  assert arr.addressable_shards[3].data.shape == (2, 8, 8, 3)
  np.testing.assert_array_equal(np.asarray(arr), local["image"])
  glob = pipeline.to_global(local, {"image": NamedSharding(mesh, P())})
  assert glob["image"].sharding.is_fully_replicated


def test_grain_orbax_handler_round_trip(folder40, tmp_path):
  """`grain_iterator` works with grain's Orbax CheckpointHandler (one JSON per host), as a training loop saves it."""
  import grain
  from etils import epath
  it = pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=4, process_index=0, process_count=1)
  _take(it, 2)
  handler = grain.checkpoint.CheckpointHandler()
  handler.save(epath.Path(tmp_path), item=it.grain_iterator)
  assert (tmp_path / "process_0-of-1.json").exists()
  expected = _take(it, 4)
  fresh = pipeline.make_iterator(_cfg(folder40), global_batch_size=8, seed=4, process_index=0, process_count=1)
  handler.restore(epath.Path(tmp_path), item=fresh.grain_iterator)
  assert _take(fresh, 4) == expected and fresh.stats == it.stats


class _FactorSource:
  """Records without an image (like the synthetic world's factors): numeric fields pass straight through."""

  def __len__(self):
    return 12

  def __getitem__(self, i):
    return {"index": np.int64(i), "angle": np.full(3, i, np.float32), "name": "dropped", "nested": {"a": i}}


def test_image_free_records_pass_through():
  it = pipeline.make_iterator(ConfigDict(dict(kind="synthetic", resolution=8)), global_batch_size=4, seed=0,
                              process_index=0, process_count=1, source=_FactorSource())
  b = next(it)
  assert set(b) == {"index", "angle", "nested/a"} and b["angle"].shape == (4, 3)
  np.testing.assert_array_equal(b["angle"][:, 0], b["index"])
  ids = list(b["index"]) + [int(v) for _ in range(2) for v in next(it)["index"]]
  assert sorted(ids) == list(range(12)) and it.stats == {"seen": 12, "bad": 0}
