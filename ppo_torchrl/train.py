"""`python -m ppo_torchrl.train`: the command's name; its code is cli/train.py.

This module is only run, never imported: importing it would rebind the package attribute
``ppo_torchrl.train`` from the training function (``from ppo_torchrl import train``) to this
module. Code that needs the command imports ``ppo_torchrl.cli.train.main``;
tests/test_architecture.py checks that nothing in the package imports this file.
"""

import sys

from ppo_torchrl.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
