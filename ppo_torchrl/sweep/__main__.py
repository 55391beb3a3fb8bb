"""`python -m ppo_torchrl.sweep`: the command's name; its code is cli.py."""

import sys

from ppo_torchrl.sweep.cli import main

sys.exit(main())
