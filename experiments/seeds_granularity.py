"""Granularity: the many-seeds update as one compiled graph (SeedsProgram's) vs a compiled
graph per minibatch step, in one process, interleaved (15 iterations each, 6 rounds), after
two warm-up iterations each. CartPole-v1, the default recipe with 4 epochs. (The
per-minibatch variant skips the metric sums: if anything, that favours it.)

    .venv/bin/python experiments/seeds_granularity.py 16 experiments/results/seeds_granularity_cpu.json
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ppo_torchrl.core.functional import Minibatch
from ppo_torchrl.core.streams import bits_at
from ppo_torchrl.run.config import PPOConfig
from ppo_torchrl.run.seeds_program import METRICS
from ppo_torchrl.run.seeds_trainer import SeedsTrainer

S = int(sys.argv[1]) if len(sys.argv) > 1 else 16
cfg = PPOConfig(num_seeds=S, epochs=4, frames=500_000, track=False, compile=True)
whole = SeedsTrainer(cfg, torch.device("cpu"))
per = SeedsTrainer(cfg, torch.device("cpu"))
p = per.program
step = torch.compile(p.step, dynamic=False, fullgraph=True, options={"cpp_wrapper": True})


def update_per_minibatch(learners, data, lr, mb_at):
    S_, size = data.action.shape[0], p.update_params.minibatch_size
    active = torch.ones(S_)
    rows = torch.arange(S_).unsqueeze(1)
    for epoch in range(p.update_params.epochs):
        order = torch.argsort(bits_at(p.keys["mb"], mb_at + epoch * p.batch, p.batch), dim=1)
        for j in range(p.batch // size):
            index = order[:, j * size : (j + 1) * size]
            batch = Minibatch(*(x[rows, index] for x in data))
            learners, active, _ = step(learners, batch, lr, active, torch.tensor(epoch > 0 or j > 0))
    z = torch.zeros(S_)
    return learners, {k: z for k in METRICS}, z + 1, z + 1


p._fns["update"] = update_per_minibatch
for t in (whole, per):
    t0 = time.perf_counter()
    t.iterate(0)
    t.iterate(1)
    print("warm-up", round(time.perf_counter() - t0, 1), flush=True)
times = {"whole": [], "per_minibatch": []}
for _round in range(6):
    for name, t in (("whole", whole), ("per_minibatch", per)):
        for _ in range(15):
            t0 = time.perf_counter()
            t.program.iterate()
            times[name].append(time.perf_counter() - t0)
fps = {name: S * cfg.frames_per_batch / statistics.median(ts) for name, ts in times.items()}
print(fps)
if len(sys.argv) > 2:
    out = Path(sys.argv[2])
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc[str(S)] = {"frames_per_second_median": fps, "date": time.strftime("%Y-%m-%d")}
    out.write_text(json.dumps(doc, indent=2) + "\n")
