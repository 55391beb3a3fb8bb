"""PPO's math, computed by hand, asserted against the modules the project wires."""
