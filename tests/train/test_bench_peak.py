"""The measured roofline (jaxface/bench/peak.py): FLOP counts against hand arithmetic, a measurement that is a
real, finite rate, and a cache that is read instead of measuring again."""

import json

import pytest

from jaxface.bench import peak


def test_flop_counts_by_hand():
  assert peak.matmul_flops(3) == 2 * 27
  # one output pixel of a 3x3, 2 -> 2 conv: 2 channels x 9 taps x 2 inputs, 2 FLOPs per multiply-add
  assert peak.conv_flops((1, 1, 1, 2)) == 2 * 2 * 9 * 2
  assert peak.conv_flops((4, 8, 8, 16)) == 2 * 4 * 8 * 8 * 16 * 16 * 9


def test_measured_peak_is_cached_per_machine(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXFACE_CACHE", str(tmp_path))
  small = dict(n=128, conv_shape=(1, 16, 16, 16), repeats=2)
  real = peak.measure
  monkeypatch.setattr(peak, "measure", lambda dtype: real(dtype, **small))
  first = peak.measured_peak()
  assert first["peak_gflops"] == max(first["matmul_gflops"], first["conv_gflops"]) > 0.01
  assert first["peak_gflops"] < 1e5  # a 2-core machine does not do 100 TFLOP/s: the timing covers the work
  stored = json.load(open(tmp_path / peak.CACHE_NAME))
  assert list(stored.values()) == [first]

  def must_not_measure(dtype):
    raise AssertionError("measured again although the machine's peak is cached")
  monkeypatch.setattr(peak, "measure", must_not_measure)
  assert peak.measured_peak() == first
  flops, source = peak.roofline("float32")
  assert flops == pytest.approx(first["peak_gflops"] * 1e9) and source.startswith("measured")
  with pytest.raises(AssertionError, match="measured again"):
    peak.measured_peak(remeasure=True)
