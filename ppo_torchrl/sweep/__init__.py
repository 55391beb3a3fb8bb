"""Sweeps: many training runs (seeds x a grid of config values) as one experiment.

    cli.py        the command (``python -m ppo_torchrl.sweep``): plan, check, run, report
    plan.py       trials: seeds crossed with grid points, each one's train flags
    backends.py   where trials run: subprocesses here (LocalPool) or Ray tasks (RayPool)
    record.py     the parent MLflow run with a nested run per trial; the sweep folder
    aggregate.py  per grid point: mean and IQM with bootstrap intervals, curves, the trial table

Each trial is a ``python -m ppo_torchrl.train`` process: nothing here imports the trainer.
"""
