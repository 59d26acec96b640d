"""The factor names of DiscoFaceGAN's λ the Python API and the sweeps address (no JAX: the CLI checks its
arguments against them before loading a model)."""


ANGLES = ("pitch", "yaw", "roll")  # λ angle order (x, y, z), radians


SEED_FACTORS = {"identity": "id", "expression": "exp", "lighting": "gamma", "pose": "angle"}
