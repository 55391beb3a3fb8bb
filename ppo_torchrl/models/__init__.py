"""Models: the policy and value networks PPO trains, built from an env's specs."""
