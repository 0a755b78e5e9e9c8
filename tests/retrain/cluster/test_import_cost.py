"""What the coordinator's process imports: it unpickles every task's results (a ``SeriesFit``
from the kernel), so the kernel's modules must import without the model libraries. Prophet
alone costs ~1.7 s of CPU (matplotlib through its plotting module) in every coordinator, every
group-training worker and every ``shelfcast run``; the workers that fit load it when they do."""

import json
import subprocess
import sys

# Libraries only a fit needs: each loads where it is used (retrain.prophet.backend,
# retrain.prophet.fast_prophet, statsforecast inside the families, LightGBM in the group model).
FIT_ONLY = ("prophet", "matplotlib", "cmdstanpy", "statsforecast", "lightgbm", "scipy.optimize")


def _loaded(module: str) -> list[str]:
    code = (
        f"import sys, json, {module}\n"
        f"print(json.dumps([m for m in {list(FIT_ONLY)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_the_coordinator_and_a_task_result_import_no_model_library() -> None:
    assert _loaded("retrain.cluster.coordinator") == []
    assert _loaded("retrain.kernel.fallback") == []  # a TaskResult's SeriesFit


def test_a_prophet_fit_still_finds_its_backend() -> None:
    assert "prophet" in _loaded("retrain.prophet.backend")
