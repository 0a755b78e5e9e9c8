"""Which failures are outages (never counted against a series) and which are its own."""

import pickle

import ray.exceptions as rx

from retrain.cluster.outages import error_text, outage_of
from retrain.errors import InfrastructureError, RetrainError


def test_our_outage_error_keeps_its_system_through_a_pickle() -> None:
    again = pickle.loads(pickle.dumps(InfrastructureError("MLflow is away", "MLflow")))
    assert isinstance(again, InfrastructureError) and isinstance(again, RetrainError)
    assert (str(again), again.system) == ("MLflow is away", "MLflow")


def test_an_outage_raised_inside_a_ray_task_is_an_outage() -> None:
    inner = InfrastructureError("Cannot use MLflow at http://mlflow:5000", "MLflow")
    raised = rx.RayTaskError("run_job", "Traceback ...", inner).as_instanceof_cause()
    assert outage_of(raised) == "MLflow"
    assert error_text(raised).startswith("InfrastructureError: Cannot use MLflow")


def test_ray_losing_the_worker_or_an_object_is_an_outage() -> None:
    assert outage_of(rx.WorkerCrashedError()) == "Ray"
    assert outage_of(rx.ObjectLostError("ab" * 14, "owner", "call site")) == "Ray"
    assert outage_of(rx.NodeDiedError("node gone")) == "Ray"


def test_the_series_own_errors_are_not() -> None:
    assert outage_of(RetrainError("Series S|I has no rows")) is None
    own = rx.RayTaskError("run_job", "Traceback ...", ValueError("bad")).as_instanceof_cause()
    assert outage_of(own) is None
    assert outage_of(rx.OutOfMemoryError("its model took the node's memory")) is None
