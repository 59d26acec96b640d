"""Flax linen modules only: no losses, no training."""
