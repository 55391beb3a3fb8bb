"""The command lines: flags generated from config classes (flags.py), and the train command
(train.py, with its arguments and checks in train_args.py). `python -m ppo_torchrl.train`
runs cli/train.py; the other commands live beside what they drive (evaluate.py, export.py,
track.py, sweep/, rlhf/)."""
