"""Pure functions of arrays for differentiable face rendering (no Flax, no training)."""
