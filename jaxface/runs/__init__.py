"""The inference half of every method: what a trained run is once training is over.

One module per method (and per frozen expert): its networks built from a config, `load_<x>(workdir)` and the
`*Model` classes, sampling and render targets. Trainers (jaxface/train/), evaluators (jaxface/eval/), editors
(jaxface/edit/) and the CLIs all build on these, and this package imports none of them. Every loader reads its
workdir through `workdir.read_run`.
"""
