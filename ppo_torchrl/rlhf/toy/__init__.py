"""The miniature RLHF pipeline, offline on a CPU in minutes: a sort-digits task generated in
code, tiny random-init GPT-2 models (or a local Hugging Face folder), then

    sft.py       stage 1: fine-tune on noisy demonstrations; the result is pi_ref
    reward.py    stage 2: a Bradley-Terry reward model on noisy preference pairs
    stage.py     stage 3: PPO (GAE over tokens, a critic) or GRPO on the core's modules
    pipeline.py  the three stages as nested MLflow runs, held-out scores, artifacts

with task.py (prompts, the true rule, demonstrations, pairs), text.py (text <-> ids),
lm.py (the models as TorchRL modules over token steps), fit.py (the minibatch loop of
stages 1 and 2) and rollout.py (sampling completions token by token).
"""
