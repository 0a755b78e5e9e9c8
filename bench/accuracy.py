"""Benchmark: forecast accuracy against untuned baselines, as /work/shared/ACCURACY.md defines it.

On the Kaggle store-item data (a sample of series) and the real Rossmann stores (closed days
absent from the file), at ``--origins`` forecast origins 28 days apart (the last one leaves
the last 28 days for testing), each method forecasts the 28 days after the origin from the
730 days before it:

- untuned baselines, one line each: Prophet's defaults (absent days as zeros, as the service
  stores them), Prophet on open days with the country's public holidays, statsforecast's
  AutoARIMA, MSTL (weekly and yearly), AutoETS, AutoTheta and SeasonalNaive (season 7);
- Shelfcast cold: :func:`retrain.kernel.fallback.retrain_one`, the Ray tasks' own kernel, on a
  new study;
- Shelfcast warm: the same series selected cold 7 days before the origin, then a warm wave
  at the origin re-using that study and state.

Scores: MAE relative to the weekly seasonal naive on days with sales, pooled over series and
days per origin and averaged over origins; 80 % interval coverage on the same days;
core-seconds (process CPU time) per series and origin. Baselines are clipped at zero;
Shelfcast is scored as published.

    python -m bench.accuracy [--kaggle-series 30] [--rossmann-series 20] [--origins 2]
                             [--jobs 2] [--rule one_se|margin] [--data-dir DIR] [--save DIR]
"""

import argparse
import multiprocessing
import pickle
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contracts.series import SEPARATOR, parse_series_key
from retrain.kernel.calendar import holiday_names
from retrain.kernel.fallback import SeriesFit, WarmState, retrain_one
from retrain.kernel.series import History
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import DEFAULT_PARAMS, FitOptions, FitStats, fit_prophet, predict_horizon
from retrain.stores.studies import StudyRef, open_study

DATA = Path(__file__).resolve().parents[2] / "shared/data"
HORIZON = 28
HISTORY_DAYS = 730
WARM_DAYS = 7
BASELINES = [
    "Prophet defaults",
    "Prophet open days + holidays",
    "AutoARIMA",
    "MSTL",
    "AutoETS",
    "AutoTheta",
    "SeasonalNaive",
]
SHELFCAST = ["Shelfcast cold", "Shelfcast warm"]


@dataclass(frozen=True)
class Series:
    """One series: daily values from ``start``, absent days as zero, and its store's total
    (every series of the store in the file) on the same days."""

    dataset: str
    key: str
    start: date
    values: np.ndarray
    country: str | None
    pool: np.ndarray | None = None


@dataclass(frozen=True)
class Outcome:
    """One method's forecast of one series at one origin."""

    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    seconds: float
    family: str | None = None


def load(path: Path, dataset: str, n: int, country: str | None) -> list[Series]:
    frame = pd.read_csv(path, parse_dates=["date"])
    frame["key"] = frame["store"].astype(str) + SEPARATOR + frame["item"].astype(str)
    keys = sorted(
        frame["key"].unique(),
        key=lambda k: [int(p) if p.isdigit() else p for p in parse_series_key(k)],
    )
    step = max(1, len(keys) // n)
    stores = frame.groupby(["store", "date"])["sales"].sum()
    out = []
    for key in keys[::step][:n]:
        rows = frame[frame["key"] == key].set_index("date")["sales"].sort_index()
        daily = rows.asfreq("D").fillna(0.0)
        store = frame.loc[frame["key"] == key, "store"].iloc[0]
        pool = stores.loc[store].reindex(daily.index).fillna(0.0).to_numpy(float)
        start = daily.index[0].date()
        out.append(Series(dataset, key, start, daily.to_numpy(float), country, pool))
    return out


def naive_reference(values: np.ndarray, origin: int) -> np.ndarray:
    """ACCURACY.md's baseline: the same weekday a week earlier, going back another week where
    that day had no sales or lies inside the test window."""
    out = np.zeros(HORIZON)
    for k in range(HORIZON):
        day = origin + 1 + k
        back = day - 7
        while back >= 0 and (back > origin or values[back] <= 0):
            back -= 7
        out[k] = values[back] if back >= 0 else 0.0
    return out


def _timed(run: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Outcome:
    began = time.process_time()
    yhat, lower, upper = run()
    return Outcome(yhat, lower, upper, time.process_time() - began)


def _statsforecast(name: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    model: Any = SeasonalNaive(season_length=7)
    if name == "AutoARIMA":
        model = AutoARIMA(season_length=7)
    elif name == "MSTL":
        model = MSTL(season_length=[7, 365])
    elif name == "AutoETS":
        model = AutoETS(season_length=7)
    elif name == "AutoTheta":
        model = AutoTheta(season_length=7)
    found = model.forecast(y=y, h=HORIZON, level=[80])
    return (
        np.asarray(found["mean"], float),
        np.asarray(found["lo-80"], float),
        np.asarray(found["hi-80"], float),
    )


def _prophet(
    start: date, y: np.ndarray, holidays: pd.DataFrame | None, fit_dir: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    options = FitOptions(fit_dir, "inprocess", 1000, FitStats())
    model = fit_prophet(start, y, DEFAULT_PARAMS, options, holidays=holidays)
    through = start + timedelta(days=len(y) - 1)
    frame = predict_horizon(model, through, HORIZON)
    return (
        frame["yhat"].to_numpy(float),
        frame["yhat_lower"].to_numpy(float),
        frame["yhat_upper"].to_numpy(float),
    )


def _shelfcast(fit: SeriesFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([p[k] for p in fit.points]) for k in ("yhat", "yhat_lower", "yhat_upper"))  # type: ignore[return-value]


def _history(series: Series, origin: int) -> History:
    first = max(0, origin + 1 - HISTORY_DAYS)
    pool = None if series.pool is None else series.pool[first : origin + 1]
    return History(series.start + timedelta(days=first), series.values[first : origin + 1], pool)


def _kernel(
    series: Series, history: History, config: TuneConfig, fit_dir: Path, cold: bool, warm: WarmState
) -> tuple[Outcome, SeriesFit]:
    """Shelfcast's row: the Ray tasks' kernel with a journal study, as a task opens it."""
    began = time.process_time()
    study = open_study(StudyRef(fit_dir / "optuna", 1), series.key, cold=cold, seed=0)
    options = FitOptions(fit_dir, "inprocess", 100, FitStats())
    fit = retrain_one(history, config, options, study, warm, lambda: None)
    yhat, lower, upper = _shelfcast(fit)
    return Outcome(yhat, lower, upper, time.process_time() - began, fit.family), fit


def _at_origin(series: Series, origin: int, config: TuneConfig, fit_dir: Path) -> dict[str, Any]:
    history = _history(series, origin)
    y = history.values
    names = holiday_names(config.calendar, history.start, history.end + timedelta(HORIZON))
    holidays = (
        pd.DataFrame({"holiday": list(names.values()), "ds": pd.to_datetime(list(names))})
        if names
        else None
    )
    open_y = np.where(y > 0, y, np.nan)
    methods: dict[str, Outcome] = {
        "Prophet defaults": _timed(lambda: _prophet(history.start, y, None, fit_dir)),
        "Prophet open days + holidays": _timed(
            lambda: _prophet(history.start, open_y, holidays, fit_dir)
        ),
    }
    for name in BASELINES[2:]:
        methods[name] = _timed(lambda name=name: _statsforecast(name, y))  # type: ignore[misc]
    methods["Shelfcast cold"], _ = _kernel(series, history, config, fit_dir, True, WarmState())
    earlier = _history(series, origin - WARM_DAYS)
    _, first = _kernel(series, earlier, config, fit_dir, True, WarmState())
    warm = WarmState(choice=first.choice)
    methods["Shelfcast warm"], warm_fit = _kernel(series, history, config, fit_dir, False, warm)
    return {
        "actual": series.values[origin + 1 : origin + 1 + HORIZON],
        "naive": naive_reference(series.values, origin),
        "methods": methods,
        "warm_family": warm_fit.family,
        "warm_method": warm_fit.method,
        "warm_reason": warm_fit.fallback_reason,
    }


def run_series(job: tuple[Series, list[int], TuneConfig]) -> dict[str, Any]:
    """Every method on one series at each origin (run in a worker process)."""
    series, origins, config = job
    warnings.filterwarnings("ignore")
    config = replace(config, calendar=replace(config.calendar, country=series.country))
    out: dict[str, Any] = {"dataset": series.dataset, "key": series.key, "origins": {}}
    for origin in origins:
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
            out["origins"][origin] = _at_origin(series, origin, config, Path(tmp))
    return out


def score(results: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    """Relative MAE per origin (pooled), its mean, coverage and core-seconds per series."""
    table: dict[str, dict[str, float]] = {}
    origins = sorted({o for r in results for o in r["origins"]})
    for name in methods:
        rel, covered, counted, seconds, runs = [], 0, 0, 0.0, 0
        for origin in origins:
            err = base = 0.0
            for r in results:
                o = r["origins"].get(origin)
                if o is None:
                    continue
                m: Outcome = o["methods"][name]
                days = o["actual"] > 0
                a = o["actual"][days]
                shelfcast = name.startswith("Shelfcast")
                yhat = m.yhat if shelfcast else np.maximum(m.yhat, 0)
                err += float(np.abs(yhat[days] - a).sum())
                base += float(np.abs(o["naive"][days] - a).sum())
                covered += int(((m.lower[days] <= a) & (a <= m.upper[days])).sum())
                counted += int(days.sum())
                seconds += m.seconds
                runs += 1
            rel.append(err / base if base else float("nan"))
        table[name] = {
            **{f"origin {i + 1}": v for i, v in enumerate(rel)},
            "mean": float(np.mean(rel)),
            "coverage": covered / counted if counted else float("nan"),
            "core_s": seconds / runs if runs else float("nan"),
        }
    return table


def print_table(dataset: str, results: list[dict[str, Any]], origin_days: list[date]) -> None:
    methods = BASELINES + SHELFCAST
    table = score(results, methods)
    best = min(BASELINES, key=lambda n: table[n]["mean"])
    print(f"\n{dataset}: {len(results)} series, origins {', '.join(map(str, origin_days))}")
    heads = [f"origin {i + 1}" for i in range(len(origin_days))]
    print(
        f"{'method':30}"
        + "".join(f"{h:>10}" for h in heads)
        + f"{'mean':>8}{'vs best':>9}{'cover80':>9}{'core-s':>8}"
    )
    for name in methods:
        row = table[name]
        gain = row["mean"] / table[best]["mean"] - 1
        print(
            f"{name:30}"
            + "".join(f"{row[h]:>10.4f}" for h in heads)
            + f"{row['mean']:>8.4f}{gain:>+9.1%}{row['coverage']:>9.1%}{row['core_s']:>8.2f}"
        )
    warm_vs_cold = table["Shelfcast warm"]["mean"] / table["Shelfcast cold"]["mean"] - 1
    print(f"best untuned: {best}; warm vs cold: {warm_vs_cold:+.2%}")
    families: Counter[str] = Counter()
    cost: dict[str, list[float]] = defaultdict(list)
    inside: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    for r in results:
        for o in r["origins"].values():
            family = o["warm_family"] or "?"
            families[family] += 1
            m: Outcome = o["methods"]["Shelfcast warm"]
            cost[family].append(m.seconds)
            days = o["actual"] > 0
            a = o["actual"][days]
            inside[family] += int(((m.lower[days] <= a) & (a <= m.upper[days])).sum())
            counted[family] += int(days.sum())
    print(
        "warm champions (series-origins, mean core-s of the warm kernel, 80 % coverage): "
        + ", ".join(
            f"{f} {n} {np.mean(cost[f]):.2f}s {inside[f] / max(counted[f], 1):.0%}"
            for f, n in families.most_common()
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kaggle-series", type=int, default=30)
    parser.add_argument("--rossmann-series", type=int, default=20)
    parser.add_argument("--origins", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rule", choices=["one_se", "margin"], default="one_se")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--save", type=Path, help="pickle every forecast here (to re-score)")
    args = parser.parse_args()
    if args.origins < 2:
        raise SystemExit("ACCURACY.md: at least two origins")

    config = TuneConfig(selection=args.rule)
    sets = []
    if args.kaggle_series > 0:
        sets.append(
            load(
                args.data_dir / "kaggle_store_item_demand/train.csv.gz",
                "kaggle",
                args.kaggle_series,
                None,
            )
        )
    if args.rossmann_series > 0:
        sets.append(
            load(
                args.data_dir / "rossmann_dev/train.csv.gz", "rossmann", args.rossmann_series, "DE"
            )
        )
    for chosen in sets:
        last = max(s.start + timedelta(days=len(s.values) - 1) for s in chosen)
        origin_days = [last - timedelta(days=HORIZON * k) for k in range(args.origins, 0, -1)]
        jobs = []
        for s in chosen:
            origins = [(d - s.start).days for d in origin_days]
            origins = [
                o
                for o in origins
                if o - WARM_DAYS + 1 >= 2 * 365 // 2 and o + HORIZON < len(s.values)
            ]
            if origins:
                jobs.append((s, origins, config))
        began = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = []
            for n, found in enumerate(pool.imap_unordered(run_series, jobs), 1):
                results.append(found)
                print(f"\r{chosen[0].dataset}: {n}/{len(jobs)} series", end="", file=sys.stderr)
        print(f" ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
        # Origins as indices differ per series (different starts); score by calendar day.
        for r in results:
            start = next(s.start for s in chosen if s.key == r["key"])
            r["origins"] = {start + timedelta(days=o): v for o, v in r["origins"].items()}
        print_table(chosen[0].dataset, results, origin_days)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            with (args.save / f"{chosen[0].dataset}.pickle").open("wb") as out:
                pickle.dump({"results": results, "origin_days": origin_days}, out)


if __name__ == "__main__":
    main()
