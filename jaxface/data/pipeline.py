"""grain pipeline: source -> this host's shard -> shuffled, repeated, decoded, batched -> global arrays.

    range(len(source))[process_index::process_count]      per-host shard (disjoint, covers the data)
      .shuffle(seed).repeat()                             reshuffled every epoch (grain reseeds per epoch)
      .map(load)                                          read + decode + crop/resize; a broken record
                                                          becomes a "bad" marker instead of an exception
      .to_iter_dataset() -> skip_bad -> batch(local_B)    bad markers are dropped *before* batching, so
                                                          batches stay full; their count rides along in
                                                          the batch (workers cannot touch our counters)
      .mp_prefetch(worker_count)                          decoding in `worker_count` processes (0: in the
                                                          read threads of this process)
      -> stats                                            (main process) counts seen/bad, fails loudly
                                                          when too many are bad, checkpoints the counts

Everything is a grain iterator, so `get_state()` is grain's own JSON state (plus our counters and a
fingerprint of the settings that must not change across a resume), and the training loop can save
`DataIterator.grain_iterator` with grain's Orbax `CheckpointHandler` (one JSON per host).
Resuming requires the same data, seed, batch size, host count and worker count (grain counts elements
per worker); a mismatch raises CheckpointError naming the setting.
"""

import grain
import jax
import numpy as np

from jaxface.data import images
from jaxface.data import sources as sources_lib
from jaxface.errors import CheckpointError, ConfigError, DataError
from jaxface.convert import flatten

_BAD, _ERR = "__bad__", "__error__"                     # marker fields of a record that failed to load
_SKIPPED, _BAD_KEY, _BAD_ERR = "__skipped__", "__bad_key__", "__bad_error__"   # riding along in batches
MIN_SEEN = 100                                          # judge the bad fraction only after this many


def _get(cfg, key, default=None):
  return sources_lib._get(cfg, key, default)  # pylint: disable=protected-access


def _flatten_numeric(record):
  """Top-level and nested numeric fields of a record as {"a/b": np.ndarray}; strings/bytes are dropped."""
  return {k: np.asarray(v) for k, v in flatten(record).items()
          if not isinstance(v, (bytes, bytearray, str)) and np.asarray(v).dtype.kind in "biuf"}


def record_to_example(record, resolution):
  """A source record -> {"image": uint8 [R, R, 3], **numeric metadata}. Raises on a broken record.

  A dict record without "image" (e.g. the synthetic world's factors, rendered later on device) passes
  through as its numeric fields.
  """
  if isinstance(record, (bytes, bytearray, memoryview)):
    record = images.decode_record(record)
  elif isinstance(record, np.ndarray):
    record = {"image": record}
  if not isinstance(record, dict):
    raise ValueError(f"a record must be bytes, an image array or a dict, got {type(record).__name__}")
  rest = _flatten_numeric({k: v for k, v in record.items() if k != "image"})
  if "image" not in record:
    if not rest:
      raise ValueError("record has neither an 'image' nor any numeric field")
    return rest
  image = record["image"]
  if isinstance(image, np.ndarray) and image.dtype == object:
    image = image.item()  # some readers hand encoded bytes back as a 0-d object array
  return {"image": images.to_square_rgb(image, resolution), **rest}


class _Load:
  """Index -> example, or a bad marker. A class (not a closure) so grain can pickle it to workers."""

  def __init__(self, source, resolution):
    self.source, self.resolution = source, resolution

  def __call__(self, index):
    try:
      return record_to_example(self.source[index], self.resolution)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure to read/decode one record (PIL, OSError, array_record, TFDS decoders raise many types)
      # is that record's problem: skip it and count it. The first error text reaches the user in the
      # DataError if too many fail, so a systematic bug cannot hide behind the skipping.
      return {_BAD: sources_lib.describe(self.source, index), _ERR: f"{type(e).__name__}: {e}"[:500]}


class _SkipBadIterator(grain.DatasetIterator):
  """Drops bad markers and attaches how many were dropped (and one example) to the next good element."""

  def __init__(self, parent, give_up_after):
    super().__init__(parent)
    self._give_up_after = give_up_after

  def __next__(self):
    skipped, key, err = 0, "", ""
    while True:
      element = next(self._parent)
      if _BAD not in element:
        break
      skipped += 1
      if not key:
        key, err = element[_BAD], element[_ERR]
      if skipped >= self._give_up_after:
        # Without this a data set that is entirely unreadable would spin forever without yielding.
        raise DataError(f"{skipped} records in a row could not be read or decoded (e.g. {key}: {err}); the data "
                        f"at data.path is not usable images. Check the path/format or rebuild it with "
                        f"`{sources_lib.PREPARE_HINT}`.")
    element[_SKIPPED] = np.int64(skipped)
    element[_BAD_KEY], element[_BAD_ERR] = key, err
    return element

  def get_state(self):
    return self._parent.get_state()  # nothing is pending between calls, so the parent's state is ours

  def set_state(self, state):
    self._parent.set_state(state)


class _SkipBadIterDataset(grain.IterDataset):

  def __init__(self, parent, give_up_after):
    super().__init__(parent)
    self._give_up_after = give_up_after

  def __iter__(self):
    return _SkipBadIterator(self._parent.__iter__(), self._give_up_after)


def _collate(elements):
  """Stacks array fields; sums the skip counts; keeps the first bad example of the batch."""
  out = {}
  for k in elements[0]:
    if k == _SKIPPED:
      out[k] = np.int64(sum(int(e[k]) for e in elements))
    elif k in (_BAD_KEY, _BAD_ERR):
      continue
    else:
      out[k] = np.stack([e[k] for e in elements])
  first = next((e for e in elements if e[_BAD_KEY]), None)
  out[_BAD_KEY] = first[_BAD_KEY] if first else ""
  out[_BAD_ERR] = first[_BAD_ERR] if first else ""
  return out


class _StatsIterator(grain.DatasetIterator):
  """Main-process end of the pipeline: strips the bookkeeping fields, counts, raises DataError."""

  def __init__(self, parent, *, fingerprint, max_bad_fraction, min_seen):
    super().__init__(parent)
    self._fingerprint = fingerprint
    self._max_bad_fraction = max_bad_fraction
    self._min_seen = min_seen
    self.stats = {"seen": 0, "bad": 0}
    self.bad_example = ""

  def __next__(self):
    batch = dict(next(self._parent))
    skipped = int(batch.pop(_SKIPPED))
    key, err = batch.pop(_BAD_KEY), batch.pop(_BAD_ERR)
    if key and not self.bad_example:
      self.bad_example = f"{key} ({err})"
    self.stats["seen"] += len(next(iter(batch.values()))) + skipped
    self.stats["bad"] += skipped
    seen, bad = self.stats["seen"], self.stats["bad"]
    if seen >= self._min_seen and bad / seen > self._max_bad_fraction:
      raise DataError(
          f"{bad} of {seen} records ({bad / seen:.1%}) could not be read or decoded, more than "
          f"data.max_bad_fraction={self._max_bad_fraction:g}; e.g. {self.bad_example or key}. Remove or fix the "
          f"bad files (`{sources_lib.PREPARE_HINT}` lists and skips them), or raise --config.data.max_bad_fraction.")
    return batch

  def get_state(self):
    return {"pipeline": self._parent.get_state(), "stats": dict(self.stats), "bad_example": self.bad_example,
            "fingerprint": dict(self._fingerprint)}

  def set_state(self, state):
    saved = state.get("fingerprint", {})
    diff = [f"{k}: saved {saved.get(k)!r}, now {v!r}" for k, v in self._fingerprint.items() if saved.get(k) != v]
    if diff:
      raise CheckpointError("the data-iterator state was saved with different data settings (" + "; ".join(diff) +
                            "); restore with the original data/batch/seed/worker settings, or start the data "
                            "from scratch by not restoring the iterator state.")
    self._parent.set_state(state["pipeline"])
    self.stats = {"seen": int(state["stats"]["seen"]), "bad": int(state["stats"]["bad"])}
    self.bad_example = state.get("bad_example", "")


class _StatsIterDataset(grain.IterDataset):

  def __init__(self, parent, **kwargs):
    super().__init__(parent)
    self._kwargs = kwargs

  def __iter__(self):
    return _StatsIterator(self._parent.__iter__(), **self._kwargs)


class DataIterator:
  """This host's slice of every global batch: `next(it) -> {"image": uint8 [local_B, R, R, 3], ...}`.

  ("image" is absent only for sources whose records carry none, e.g. factor-only synthetic records.)
  """

  def __init__(self, dataset, *, source, local_batch_size):
    self.dataset = dataset
    self.source = source
    self.local_batch_size = local_batch_size
    self.grain_iterator = iter(dataset)

  def __iter__(self):
    return self

  def __next__(self):
    return next(self.grain_iterator)

  def get_state(self):
    """JSON-serialisable; `set_state` of it (in any process) continues with the exact same batches."""
    return self.grain_iterator.get_state()

  def set_state(self, state):
    self.grain_iterator.set_state(state)

  @property
  def stats(self):
    """{"seen", "bad"}: records read on this host and how many of them were skipped as unreadable."""
    return dict(self.grain_iterator.stats)

  def close(self):
    """Stops grain worker processes (they are also stopped on garbage collection)."""
    self.grain_iterator.close()  # grain closes parents recursively, down to the worker pool


def _absl_flags_parsed():
  """grain's worker pool reads absl flags; outside an absl app nobody parsed them, so mark the defaults used."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def build_dataset(source, *, resolution, local_batch_size, seed, process_index, process_count, worker_count=0,
                  prefetch=2, max_bad_fraction=0.01, read_threads=None):
  """The grain IterDataset behind `make_iterator` (exposed so tests/benchmarks can pass any source)."""
  n = len(source)
  shard_len = len(range(process_index, n, process_count))
  if shard_len == 0:
    raise DataError(f"host {process_index} of {process_count} gets no records: the data set has only {n}; use "
                    f"more data than hosts.")
  min_seen = min(MIN_SEEN, shard_len)
  ds = grain.MapDataset.range(n)[process_index::process_count]
  ds = ds.shuffle(seed=int(seed) % (2 ** 32)).repeat(None)  # repeat reseeds the shuffle every epoch
  ds = ds.map(_Load(source, resolution))
  threads = read_threads or (8 if worker_count == 0 else 2)  # PIL releases the GIL while decoding
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2 * local_batch_size, 16)))
  # A run of bad records long enough to fail the fraction test on its own; with max_bad_fraction >= 1
  # only a full pass of bad records (nothing left to train on) gives up.
  give_up = min_seen if max_bad_fraction < 1 else max(shard_len, min_seen)
  it = _SkipBadIterDataset(it, give_up)
  it = it.batch(local_batch_size, drop_remainder=True, batch_fn=_collate)
  if worker_count > 0:
    _absl_flags_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                     per_worker_buffer_size=max(1, prefetch)))
  # With worker_count=0 the read threads above already decode ahead of the consumer; a batch-level
  # thread prefetch would add little (stacking is cheap) and grain's version errors at interpreter exit.
  fingerprint = {"num_records": n, "resolution": resolution, "local_batch_size": local_batch_size,
                 "seed": int(seed), "process_index": process_index, "process_count": process_count,
                 "worker_count": worker_count}
  return _StatsIterDataset(it, fingerprint=fingerprint, max_bad_fraction=max_bad_fraction, min_seen=min_seen)


def make_iterator(data_cfg, *, global_batch_size, seed, process_index=None, process_count=None, source=None):
  """data config -> DataIterator over this host's share of every global batch (infinite, resumable)."""
  resolution = images.check_resolution(_get(data_cfg, "resolution"))
  process_index = jax.process_index() if process_index is None else int(process_index)
  process_count = jax.process_count() if process_count is None else int(process_count)
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ConfigError(f"global batch size {global_batch_size} must be a positive multiple of the number of hosts "
                      f"({process_count}); change the batch size in the config.")
  local = global_batch_size // process_count
  max_bad = _get(data_cfg, "max_bad_fraction", None)
  max_bad = 0.01 if max_bad is None else float(max_bad)
  if not 0 <= max_bad:
    raise ConfigError(f"data.max_bad_fraction={max_bad} must be >= 0 (e.g. 0.01).")
  workers = int(_get(data_cfg, "worker_count", 0) or 0)
  if workers < 0:
    raise ConfigError(f"data.worker_count={workers} must be >= 0 (0 decodes in the training process).")
  prefetch = _get(data_cfg, "prefetch", None)
  prefetch = 2 if prefetch is None else int(prefetch)
  source = sources_lib.make_source(data_cfg) if source is None else source
  ds = build_dataset(source, resolution=resolution, local_batch_size=local, seed=seed,
                     process_index=process_index, process_count=process_count, worker_count=workers,
                     prefetch=prefetch, max_bad_fraction=max_bad)
  return DataIterator(ds, source=source, local_batch_size=local)


def to_global(local_batch, sharding):
  """Host-local batch -> global jax.Arrays (`sharding`: one Sharding, or a dict of them keyed like the batch)."""
  out = {}
  for k, v in local_batch.items():
    s = sharding[k] if isinstance(sharding, dict) else sharding
    out[k] = jax.make_array_from_process_local_data(s, np.asarray(v))
  return out
