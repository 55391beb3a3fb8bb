"""The run machinery of the gymnasium trainer: its config, the training loop, evaluation,
checkpoints, tracking, progress output and the --explain walkthrough. It composes the core,
the env adapters and the models; nothing below it imports from here."""
