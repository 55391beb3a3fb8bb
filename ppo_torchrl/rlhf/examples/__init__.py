"""Tasks written the way a user writes one: prompts (rows of a JSONL file, or a generator of
them) and reward functions with TRL's signature. Read one, copy it, change it.

    arithmetic.py   small-number sums: the rows, the `exact` and `bare` rewards, and
                    ``python -m ppo_torchrl.rlhf.examples.arithmetic OUT`` to write them as files
"""
