"""Benchmark: the cost of recording one series in MLflow as its model gains versions.

Each wave registers a new version of every retrained series' model. Records 1,000 versions of
one model on a fresh SQLite store, twice: through Shelfcast's ``Tracker``, and with the alias
set through ``MlflowClient.set_registered_model_alias`` (the baseline, which loads the model
with all its versions first). Prints ms per record over the first and the last 50 versions.

    python -m bench.registry [--versions 1000]
"""

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

from retrain.kernel.fallback import SeriesFit
from retrain.stores.registry import CHAMPION, Tracker

WINDOW = 50


class PublicAliasTracker(Tracker):
    def _set_champion(self, name: str, version: str) -> None:
        self.client.set_registered_model_alias(name, CHAMPION, version)


def record(tracker_type: type[Tracker], versions: int) -> tuple[float, float]:
    """Mean ms per record over the first and the last ``WINDOW`` versions."""
    fit = SeriesFit(
        method="tuned",
        data_through=date(2024, 1, 1),
        points=[],
        model_json="{}" * 60_000,  # about a real model file's size
        params={"changepoint_prior_scale": 0.05},
        trials=4,
        validation_mae=1.0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tracker = tracker_type(
            f"sqlite:///{tmp}/mlflow.db", "bench", artifact_location=str(Path(tmp) / "artifacts")
        )
        wave = tracker.start_wave("bench", {})
        took = []
        for n in range(versions):
            began = time.perf_counter()
            tracker.record_series(wave, "S1", "I1", fit, {})
            took.append(time.perf_counter() - began)
            if n % 200 == 199:
                print(f"  {tracker_type.__name__}: {n + 1} versions", flush=True)
    first, last = took[:WINDOW], took[-WINDOW:]
    return 1000 * sum(first) / len(first), 1000 * sum(last) / len(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=1000)
    args = parser.parse_args()
    if args.versions < 2 * WINDOW:
        parser.error(f"--versions must be at least {2 * WINDOW}")
    base = record(PublicAliasTracker, args.versions)
    ours = record(Tracker, args.versions)
    print(f"\nms per record       first {WINDOW}   last {WINDOW}   last/first")
    for label, (first, last) in [("baseline (public)", base), ("shelfcast", ours)]:
        print(f"{label:18}{first:10.1f}{last:10.1f}{last / first:11.2f}x")
    print(f"shelfcast/baseline at {args.versions} versions: {ours[1] / base[1]:.2f}")


if __name__ == "__main__":
    main()
