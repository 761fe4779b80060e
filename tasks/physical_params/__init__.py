"""``physical_params``: physical parameters from video by differentiable simulation and rendering (gradSim)."""
