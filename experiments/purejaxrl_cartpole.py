"""Baseline: PureJaxRL's PPO on gymnax CartPole-v1, N seeds vmapped in one jit, on this CPU.

Not part of this project's code and never imported by it: it runs PureJaxRL (which is not
vendored here) in its own venv, to measure the peer we compare against.

Setup (outside this repository):

    python3.11 -m venv /work/jaxenv
    /work/jaxenv/bin/pip install "jax[cpu]" flax optax gymnax distrax
    mkdir -p /tmp/purejaxrl
    git --git-dir=/work/.mirror/luchris429+purejaxrl/repo archive HEAD purejaxrl | tar -x -C /tmp/purejaxrl

Then edit /tmp/purejaxrl/purejaxrl/wrappers.py (the copy, never this repository) in two ways:
drop the ``brax`` and ``navix`` imports together with the Brax and Navix wrapper classes that
only they need; and, since gymnax >= 1.0's ``env.step`` returns ``terminated, truncated``
instead of one ``done``, make FlattenObservationWrapper.step unpack both and pass on
``done = terminated | truncated`` (the 5-tuple every other wrapper and ppo.py expect).

Run:

    /work/jaxenv/bin/python experiments/purejaxrl_cartpole.py --purejaxrl /tmp/purejaxrl \\
        --seeds 1 16 --out experiments/results/purejaxrl_cpu.json

For each N: seed s uses ``PRNGKey(s)`` for s in 0..N-1, so seed s trains identically whatever N
is. ``jax.jit(jax.vmap(make_train(config)))`` is called twice: the first call is compile + run,
the second run only. Then each seed's final policy plays 10 greedy episodes (argmax of the
actor logits, up to 500 steps) of ``gymnax.make("CartPole-v1")``. Results for each N are merged
into the JSON file as they finish.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import gymnax
import jax
import jax.numpy as jnp

# PureJaxRL's own CartPole config (the __main__ block of purejaxrl/ppo.py), DEBUG off.
CONFIG: dict[str, Any] = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": False,
}
EVAL_EPISODES = 10
EVAL_STEPS = 500
SOLVED = 475.0


def greedy_eval(train_state: Any, keys: jax.Array) -> jax.Array:
    """Mean greedy return over EVAL_EPISODES episodes for each seed's TrainState (leading axis N)."""
    env, params = gymnax.make("CartPole-v1")

    def episode(ts: Any, key: jax.Array) -> jax.Array:
        obs, state = env.reset(key, params)

        def step(carry: tuple, _: None) -> tuple:
            obs, state, key, ret, alive = carry
            key, sub = jax.random.split(key)
            pi, _value = ts.apply_fn(ts.params, obs)
            action = jnp.argmax(pi.logits)
            obs, state, reward, terminated, truncated, _info = env.step(sub, state, action, params)
            ret = ret + reward * alive
            alive = alive & ~(terminated | truncated)
            return (obs, state, key, ret, alive), None

        init = (obs, state, key, jnp.float32(0.0), jnp.bool_(True))
        (_, _, _, ret, _), _ = jax.lax.scan(step, init, None, EVAL_STEPS)
        return ret

    def per_seed(ts: Any, key: jax.Array) -> jax.Array:
        return jax.vmap(episode, in_axes=(None, 0))(ts, jax.random.split(key, EVAL_EPISODES)).mean()

    return jax.jit(jax.vmap(per_seed))(train_state, keys)


def run(make_train: Any, n: int) -> dict[str, Any]:
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(n))
    train = jax.jit(jax.vmap(make_train(dict(CONFIG))))
    t0 = time.perf_counter()
    out = jax.block_until_ready(train(keys))
    first = time.perf_counter() - t0
    del out
    t0 = time.perf_counter()
    out = jax.block_until_ready(train(keys))
    second = time.perf_counter() - t0
    frames = n * int(CONFIG["TOTAL_TIMESTEPS"])
    # Training-time episodic return over the last update (the Log wrapper's metric).
    last = out["metrics"]["returned_episode_returns"][:, -1].mean(axis=(1, 2))
    means = greedy_eval(out["runner_state"][0], jax.random.split(jax.random.PRNGKey(1234), n))
    means = [float(m) for m in means]
    return {
        "n_seeds": n,
        "compile_plus_run_s": first,
        "run_s": second,
        "frames_per_s_all_seeds": frames / second,
        "frames_per_s_all_seeds_incl_compile": frames / first,
        "greedy_eval_mean_return_per_seed": means,
        "greedy_eval_frac_ge_475": sum(m >= SOLVED for m in means) / n,
        "train_last_update_return_per_seed": [float(x) for x in last],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purejaxrl", type=Path, required=True, help="folder holding the purejaxrl package")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--out", type=Path, default=Path("experiments/results/purejaxrl_cpu.json"))
    args = ap.parse_args()
    # ppo.py does `from wrappers import ...`, so its own folder must be importable too.
    sys.path[:0] = [str(args.purejaxrl), str(args.purejaxrl / "purejaxrl")]
    from purejaxrl.ppo import make_train

    pkgs = ["jax", "jaxlib", "flax", "optax", "gymnax", "distrax", "chex", "numpy"]
    doc: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc.update(
        {
            "what": "PureJaxRL PPO (purejaxrl/ppo.py make_train), gymnax CartPole-v1, jit(vmap) over seeds",
            "seeding": "seed s -> jax.random.PRNGKey(s), s = 0..N-1; eval keys split from PRNGKey(1234)",
            "frames_per_seed_nominal": int(CONFIG["TOTAL_TIMESTEPS"]),
            "config": CONFIG,
            "greedy_eval": {"episodes_per_seed": EVAL_EPISODES, "max_steps": EVAL_STEPS, "solved": SOLVED},
            "versions": {p: md.version(p) for p in pkgs} | {"python": platform.python_version()},
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "processor": platform.processor(),
                "jax_devices": [str(d) for d in jax.devices()],
                "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            },
        }
    )
    doc.setdefault("results", {})
    for n in args.seeds:
        res = run(make_train, n)
        print(json.dumps(res), flush=True)
        doc["results"][str(n)] = res
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
