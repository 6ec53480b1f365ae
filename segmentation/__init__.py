"""Face parsing: RoI Tanh-polar warps and RTNet."""
