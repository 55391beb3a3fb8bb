"""How a local Ray instance's workers import what this process imports: the collector's Ray
workers (collection.py) and a sweep's Ray tasks (sweep/backends.py) both start one."""

from __future__ import annotations

import os
import sys
from typing import Any


def local_runtime_env() -> dict[str, Any]:
    """Ray's runtime_env for a local instance: its workers import what this process imports
    (the working directory, hence an env's ``module:`` prefix, included)."""
    paths = [os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
