"""`python -m ppo_torchrl.rlhf`: run SFT -> reward model -> PPO (or GRPO) and report.

Exit status: 0 done; 2 bad input (one line, nothing started); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ppo_torchrl.cli import OneLineArgumentParser, add_config_flags, config_from_args
from ppo_torchrl.fields import ConfigError
from ppo_torchrl.rlhf.config import RLHFConfig
from ppo_torchrl.run.tracking import TrackingError


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(
        prog="python -m ppo_torchrl.rlhf",
        allow_abbrev=False,
        description="A miniature RLHF pipeline (SFT, reward model, PPO/GRPO) on the project's PPO core.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML file of RLHFConfig fields; flags override it")
    parser.add_argument("--summary-json", metavar="PATH", help="write the results as JSON here")
    add_config_flags(parser, RLHFConfig)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, RLHFConfig)
        if cfg.task == "arithmetic":
            return _run_arithmetic(cfg, args)
        if cfg.model_path is not None and not Path(cfg.model_path).is_dir():
            raise ConfigError(f"model_path: not a folder: {cfg.model_path}")
        try:
            import transformers
        except ImportError:
            raise ConfigError(
                "the RLHF pipeline needs Hugging Face transformers: pip install -e '.[rlhf]'"
            ) from None
        # Our own progress lines say what happens; transformers' load reports and shard
        # progress bars for the tiny models would only bury them.
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        from ppo_torchrl.rlhf.pipeline import run_pipeline  # torch and transformers: after the checks

        summary = run_pipeline(cfg)
    except (ConfigError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(
        f"\nSFT reference S0 {summary['S0']:.1f} -> {cfg.algo.upper()} {summary['final_score']:.1f} "
        f"(true-rule score, 0-100, held-out prompts, sampled; greedy {summary['final_score_greedy']:.1f}); "
        f"KL to pi_ref {summary['final_kl_to_ref']:.3f} nats per completion; reward model held-out "
        f"accuracy {summary['rm_heldout_accuracy']:.1%}; best prompt-independent completion "
        f"{summary['best_constant_score']:.1f}; {summary['total_seconds']:.0f} s. -> {summary['output_dir']}"
    )
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _run_arithmetic(cfg: RLHFConfig, args) -> int:
    """The real-model path: errors here are still one line and exit 2 (model, extra, store)."""
    try:
        from ppo_torchrl.rlhf.hub import locate

        locate(cfg.model, cfg.model_path, cfg.gguf_file)  # before torch and transformers load
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        from ppo_torchrl.rlhf.rule_pipeline import run_rule_pipeline

        summary = run_rule_pipeline(cfg)
    except (ConfigError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(
            f"error: the real-model RL stage needs {err.name}: pip install -e '.[rlhf-real]'", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(
        f"\nbase model {summary['base_exact']:.1f}% -> {cfg.algo.upper()} {summary['final_exact']:.1f}% "
        f"held-out exact answers (greedy, {summary['held_out_problems']} problems; "
        f"{summary['gain_pp']:+.1f} pp); KL to pi_ref {summary['final_kl_to_ref']:.3f} nats per response; "
        f"{summary['updates']} updates in {summary['rl_seconds']:.0f} s. -> {summary['output_dir']}"
    )
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
