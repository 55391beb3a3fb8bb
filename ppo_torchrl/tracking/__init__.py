"""Experiment tracking with MLflow, off the training loop's critical path.

    params.py          TrackingParams: what a config hands the tracker (PPOConfig and
                       RLHFConfig both compose it)
    tracker.py         the Tracker interface, NullTracker, make_tracker
    mlflow_run.py      MlflowTracker: one MLflow run, made, resumed or joined; nested runs
    child.py           a nested run (an RLHF stage) logged through its parent's journal
    journal.py         the run folder's numbered records (tracking.jsonl)
    writer.py          the background thread that sends them, through outages
    send.py            records as MLflow calls; SQLite locking and retries; bounded HTTP
    sync.py            what ``python -m ppo_torchrl.track sync`` does
    names.py           metric names grouped by prefix (loss/ train/ eval/ perf/)
    model.py           a policy as an MLflow model (signature, input example, registry)
    system_metrics.py  MLflow's system metrics

Nothing here imports the trainer, checkpoints or configs: callers hand it what to log.
"""
