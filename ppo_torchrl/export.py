"""`python -m ppo_torchrl.export CHECKPOINT --onnx policy.onnx [--torch-export policy.pt2]`:
a checkpoint's greedy policy for use outside this package.

The exported graph is `GreedyPolicy` (models/greedy.py): ``observation`` (a batch, encoded as
``make_gym_env`` gives it: the env's own array for Box observations) in, ``action`` out, with
the observation normalisation inside. Before it says done, the export is checked against the
checkpoint on real observations (``--samples`` of them, from the env under random actions):
the ONNX file through onnxruntime, the ``torch.export`` program after loading it back.
Discrete actions must be identical, continuous ones within 1e-5.

Exit status: 0 exported and checked; 1 the check failed (the file is kept, for a bug
report); 2 bad input (one line: a missing or damaged checkpoint, an output folder that does
not exist or cannot be written, the export extra not installed).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from ppo_torchrl.cli.flags import OneLineArgumentParser, check_writable
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.run.errors import CheckpointError

EXTRA = "pip install 'ppo_torchrl[export]'"
TOLERANCE = 1e-5


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.export",
        description="Export a checkpoint's greedy policy (observation in, action out) to ONNX "
        "and/or torch.export, checked against the checkpoint.",
    )
    parser.add_argument("checkpoint", help="a checkpoint written by ppo_torchrl.train, or its run folder")
    parser.add_argument("--onnx", metavar="PATH", help="write an ONNX model here (checked with onnxruntime)")
    parser.add_argument(
        "--torch-export",
        metavar="PATH",
        help="write a torch.export program here (.pt2; torch.export.load reads it)",
    )
    parser.add_argument(
        "--samples", type=int, default=256, help="observations the check compares (default: 256)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the env that gives the observations (default: 0)"
    )
    parser.add_argument(
        "--seed-index",
        type=int,
        metavar="K",
        help="of a --num-seeds run's checkpoint, export seed number K (0-based)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.onnx or args.torch_export):
        parser.error("nothing to write: give --onnx PATH and/or --torch-export PATH")
    if args.samples < 1:
        parser.error(f"argument --samples: must be >= 1 (got {args.samples})")
    try:
        for path in filter(None, (args.onnx, args.torch_export)):
            check_writable(Path(path))
        if args.onnx:
            _check_onnx_installed()
        from ppo_torchrl.run.checkpoint import load_policy  # torch: after the cheap checks

        cfg, actor = load_policy(args.checkpoint, "cpu", args.seed_index)
    except (CheckpointError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    policy, observations = _greedy_and_observations(cfg, actor, args.samples, args.seed)
    expected = policy(observations).detach()

    def kind(t: Any) -> str:
        return f"{str(t.dtype).removeprefix('torch.')}[batch{''.join(f', {d}' for d in t.shape[1:])}]"

    print(f"{cfg.env}: greedy policy, observation {kind(observations)} -> action {kind(expected)}")
    ok = True
    try:
        if args.onnx:
            ok &= _report("ONNX", args.onnx, expected, _onnx(policy, observations, args.onnx))
        if args.torch_export:
            ok &= _report(
                "torch.export",
                args.torch_export,
                expected,
                _torch_export(policy, observations, args.torch_export),
            )
    except OSError as err:  # e.g. the disk filled up while writing
        print(
            f"error: cannot write the export: {err.filename or ''} ({err.strerror or err})", file=sys.stderr
        )
        return 2
    return 0 if ok else 1


def _check_onnx_installed() -> None:
    import importlib

    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConfigError(f"onnx: needs {', '.join(missing)}, not installed: {EXTRA}")


def _greedy_and_observations(cfg: Any, actor: Any, samples: int, seed: int) -> tuple[Any, Any]:
    """The greedy policy (Box actions clamped to the env's bounds) and real observations."""
    from ppo_torchrl.run.greedy_io import greedy_policy, sample_observations

    policy = greedy_policy(actor, cfg.env, cfg.env_kwargs)
    return policy, sample_observations(cfg.env, cfg.env_kwargs, samples, seed)


def _onnx(policy: Any, observations: Any, path: str) -> Any:
    import contextlib
    import io
    import logging

    import onnxruntime
    import torch

    # The exporter lists the torchvision ops it skips (no torchvision here: none are used).
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # its progress lines
        warnings.simplefilter("ignore", FutureWarning)  # torch's own LeafSpec deprecation
        torch.onnx.export(
            policy,
            (observations[:2],),
            path,
            dynamo=True,
            input_names=["observation"],
            output_names=["action"],
            dynamic_shapes=({0: batch},),
        )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.as_tensor(session.run(None, {"observation": observations.numpy()})[0])


def _torch_export(policy: Any, observations: Any, path: str) -> Any:
    import torch

    program = torch.export.export(
        policy, (observations[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    with warnings.catch_warnings(), torch.no_grad():  # torch's own LeafSpec deprecation (save, load)
        warnings.simplefilter("ignore", FutureWarning)
        torch.export.save(program, path)
        return torch.export.load(path).module()(observations).detach()


def _report(kind: str, path: str, expected: Any, got: Any) -> bool:
    """Print the parity line; True when the export acts as the checkpoint does."""
    n = len(expected)
    if got.shape != expected.shape:
        print(f"{kind}: {path}: parity FAILED, action shape {list(got.shape)} vs {list(expected.shape)}")
        return False
    if expected.is_floating_point():
        worst = float((got.float() - expected).abs().max())
        ok = worst <= TOLERANCE
        print(f"{kind}: wrote {path}; parity on {n} observations: max |action difference| {worst:.2e}"
              + ("" if ok else f" > {TOLERANCE:g}: FAILED"))  # fmt: skip
        return ok
    same = int((got == expected).reshape(n, -1).all(dim=1).sum())
    print(f"{kind}: wrote {path}; parity on {n} observations: {same}/{n} actions identical"
          + ("" if same == n else ": FAILED"))  # fmt: skip
    return same == n


if __name__ == "__main__":
    sys.exit(main())
