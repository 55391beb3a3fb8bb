"""The trained policy as an MLflow model: observations in, actions out, servable anywhere.

The greedy policy (`GreedyPolicy`, observation normalisation inside) is logged with MLflow's
PyTorch flavor in its ``pt2`` format: a ``torch.export`` program, so loading it needs torch
and MLflow, not this package, and ``mlflow models predict/serve`` run it. Its signature is
two tensor specs (a batch of encoded observations -> a batch of actions) and its input
example five real observations. MLflow 3 keeps models as LoggedModels; the one made here
carries the run as its source, so ``runs:/<run id>/policy`` resolves to it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ppo_torchrl.fields import ConfigError

MODEL_NAME = "policy"
EXAMPLE_ROWS = 5


@dataclass
class LoggedPolicy:
    uri: str  # runs:/<run id>/policy
    model_id: str
    registered: str | None = None  # "NAME version N (alias A)"


def warn_not_logged(err: Exception) -> None:
    """One line: the model is missing, the run's results are not."""
    first = (str(err).strip().splitlines() or [""])[0][:200]
    print(
        f"warning: the MLflow model was not logged ({type(err).__name__}: {first}); the "
        "checkpoints are intact: python -m ppo_torchrl.export makes ONNX / torch.export from them",
        file=sys.stderr,
        flush=True,
    )


def check_registry_names(name: str | None, alias: str) -> None:
    """Refuse, before any work, a model name or alias the registry would refuse at the end of
    the run: MLflow's own checks, the ones its stores apply."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation
    from mlflow.utils.validation import _validate_model_name

    # MLflow 3.18 renamed the alias checks (_validate_model_alias_name -> _validate_alias_name).
    _validate_model_alias_name = getattr(
        validation, "_validate_alias_name", getattr(validation, "_validate_model_alias_name", None)
    )
    _validate_model_alias_name_reserved = getattr(
        validation,
        "_validate_alias_name_reserved",
        getattr(validation, "_validate_model_alias_name_reserved", None),
    )

    checks = [("register_model", _validate_model_name, name)] if name is not None else []
    checks += [("model_alias", _validate_model_alias_name, alias)]
    checks += [("model_alias", _validate_model_alias_name_reserved, alias)]
    for field, check, value in checks:
        try:
            check(value)
        except MlflowException as err:
            refused = f"the MLflow model registry refuses {value!r}"
            raise ConfigError(f"{field}: {refused}: {err.message}") from None


def signature_for(example: torch.Tensor, actions: torch.Tensor) -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def spec(t: torch.Tensor) -> TensorSpec:
        # Unnamed: a plain array goes in and comes out, the batch dimension free.
        return TensorSpec(np.dtype(str(t.dtype).removeprefix("torch.")), (-1, *t.shape[1:]))

    return ModelSignature(Schema([spec(example)]), Schema([spec(actions)]))


def log_policy(
    client: Any,
    run_id: str,
    policy: torch.nn.Module,
    observations: torch.Tensor,
    register_as: str | None = None,
    alias: str = "newest",
) -> LoggedPolicy:
    """Log ``policy`` as the run's MLflow model (and register it, when asked)."""
    with _global_tracking_uri(client.tracking_uri):
        return _log_policy(client, run_id, policy, observations, register_as, alias)


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging and registration use its global tracking URI: point it at the
    run's store for the call, if something in this process moved it, and put back both the
    global and ``MLFLOW_TRACKING_URI``, which MLflow's own ``_use_tracking_uri`` deletes."""
    import mlflow

    if mlflow.get_tracking_uri() == uri:
        yield
        return
    from mlflow.tracking._tracking_service import utils

    before, env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def _log_policy(
    client: Any,
    run_id: str,
    policy: torch.nn.Module,
    observations: torch.Tensor,
    register_as: str | None,
    alias: str,
) -> LoggedPolicy:
    import mlflow

    example = observations[:EXAMPLE_ROWS]
    with torch.no_grad():
        actions = policy(example)
    experiment_id = client.get_run(run_id).info.experiment_id
    # Made here rather than by log_model, which would file it under the active experiment
    # (not this run's, when the client and the fluent API disagree) where runs:/ misses it.
    model = client.create_logged_model(experiment_id=experiment_id, name=MODEL_NAME, source_run_id=run_id)
    torch_version = torch.__version__.split("+")[0]
    mlflow.pytorch.log_model(
        policy,
        name=MODEL_NAME,
        signature=signature_for(example, actions),
        input_example=example.numpy(),
        serialization_format="pt2",
        # Given, not inferred: inference loads the model in a subprocess (seconds) and would
        # list this package, which a pt2 program does not need.
        pip_requirements=[f"torch=={torch_version}", f"mlflow=={mlflow.__version__}"],
        run_id=run_id,
        model_id=model.model_id,
    )
    logged = LoggedPolicy(f"runs:/{run_id}/{MODEL_NAME}", model.model_id)
    if register_as is not None:
        version = mlflow.register_model(f"models:/{model.model_id}", register_as)
        client.set_registered_model_alias(register_as, alias, version.version)
        logged.registered = f"{register_as} version {version.version} (alias {alias})"
    return logged
