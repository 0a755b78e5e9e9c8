"""Benchmark: forecast accuracy against untuned baselines, as ACCURACY.md defines it.

On the Kaggle store-item data and the real Rossmann stores (closed days absent, plans and
store metadata known), at ``--origins`` origins about two months apart (every season within
a year; the last leaves the last 28 days for testing), each method forecasts the 28 days
after the origin from what was known at the origin:

- untuned per-series baselines, one line each: Prophet's defaults (absent days as zeros),
  Prophet on open days with the country's holidays, statsforecast's AutoARIMA, MSTL,
  AutoETS, AutoTheta and SeasonalNaive (season 7);
- untuned global LightGBM, one model across the data set's series: the reference the issue
  describes (lags 28-49 and 364, a 28-day rolling mean, calendar, the state's holidays and
  the days around them, the store as a category, open days, log1p; with plans: the promotion
  flag and the days before and after it, school holidays) and the same model with
  Shelfcast's own features;
- Shelfcast global: the group model alone (:mod:`retrain.group`), tuned by its study;
- Shelfcast warm: the service's path. A week before the origin the group model is tuned
  (cold) and every series selected cold; at the origin the group study runs warm, and every
  series runs a warm wave (:func:`retrain.kernel.retrain_one`) with the group model's view;
- Shelfcast warm without plans (data sets with plans): the same without any plan.

New items (``--new-items``): that many series have their history cut to 30 and 60 days at
each origin (the rest of the group keeps its history); Shelfcast forecasts them with its
usual path and they are scored against the weekly seasonal naive.

Scores: MAE relative to the weekly seasonal naive on days with sales, pooled over series and
days per origin and averaged over origins; 80 % interval coverage on the same days; core-s
(process CPU) per series and origin, group models' time spread over their series.
Baselines are clipped at zero; Shelfcast is scored as published.

    python -m bench.accuracy [--datasets rossmann,kaggle] [--rossmann-series 20]
        [--kaggle-series 30] [--origins 6] [--jobs 2] [--new-items 5] [--save DIR]
"""

import argparse
import multiprocessing
import pickle
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from bench.datasets import DATA, HORIZON, Series, load, naive_reference, origin_days
from retrain.group.features import GroupSeries, group_view, series_input
from retrain.group.model import GroupModel, GroupParams, fit_group
from retrain.group.tuning import GroupTuneConfig, tune_group
from retrain.kernel.calendar import CalendarConfig, holiday_names
from retrain.kernel.fallback import SeriesFit, WarmState, retrain_one
from retrain.kernel.families import GroupView
from retrain.kernel.plans import day_plan, plans_for
from retrain.kernel.series import History
from retrain.kernel.tuning import TuneConfig
from retrain.prophet.fit import DEFAULT_PARAMS, FitOptions, FitStats, fit_prophet, predict_horizon
from retrain.stores.studies import StudyRef, open_study

__all__ = ["group_stage", "main", "score"]

HISTORY_DAYS = 730
WARM_DAYS = 7
NEW_ITEM_DAYS = (30, 60)
BASELINES = [
    "Prophet defaults",
    "Prophet open days + holidays",
    "AutoARIMA",
    "MSTL",
    "AutoETS",
    "AutoTheta",
    "SeasonalNaive",
]
GLOBAL_REFERENCE = "LightGBM untuned (reference)"
GLOBAL_REFERENCE_PLANS = "LightGBM untuned + plans (reference)"
GLOBAL_UNTUNED = "LightGBM untuned, Shelfcast features"
SHELFCAST_GLOBAL = "Shelfcast global"
SHELFCAST_WARM = "Shelfcast warm"
SHELFCAST_NO_PLANS = "Shelfcast warm without plans"


@dataclass(frozen=True)
class Outcome:
    """One method's forecast of one series at one origin."""

    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    seconds: float
    family: str | None = None


@dataclass
class GroupStage:
    """What the group models say at one origin, per series, for one configuration."""

    views_before: dict[str, GroupView] = field(default_factory=dict)  # a week before
    views: dict[str, GroupView] = field(default_factory=dict)  # at the origin
    seconds: float = 0.0  # the group models' core-s, both retrains


def _point(series: Series, day: date) -> int:
    return (day - series.start).days


def _history(series: Series, origin: int, days: int = HISTORY_DAYS) -> History:
    first = max(0, origin + 1 - days)
    pool = None if series.pool is None else series.pool[first : origin + 1]
    return History(series.start + timedelta(days=first), series.values[first : origin + 1], pool)


def _inputs(
    series: Sequence[Series],
    through: date,
    calendar: CalendarConfig,
    with_plans: bool,
    cut: dict[str, int] | None = None,
) -> list[GroupSeries]:
    """The group model's view of every series as known on ``through`` (``cut``: series whose
    history starts that many days before it: new items)."""
    out = []
    for s in series:
        end = _point(s, through)
        first = max(0, end + 1 - (cut or {}).get(s.key, end + 1))
        if end < first:
            continue
        out.append(
            series_input(
                s.key,
                s.store,
                s.item,
                s.start + timedelta(days=first),
                s.values[first : end + 1],
                s.known_plans(through) if with_plans else None,
                s.store_info,
                replace(calendar, country=s.country),
                HORIZON,
                s.statics,
            )
        )
    return out


def _views(
    model: GroupModel, inputs: list[GroupSeries], through: date, version: str
) -> dict[str, GroupView]:
    forecasts = model.predict(inputs, through)
    out = {}
    for one in inputs:
        history_start = max(one.start, through - timedelta(days=HISTORY_DAYS - 1))
        out[one.key] = group_view(
            forecasts[one.key],
            model.cutoffs,
            model.folds.get(one.key),
            version,
            model.ratio_band if one.key in model.folds else model.young_band,
            history_start,
        )
    return out


def group_stage(
    series: Sequence[Series],
    origin: date,
    calendar: CalendarConfig,
    with_plans: bool,
    config: GroupTuneConfig,
) -> tuple[GroupStage, GroupModel]:
    """Group retrains a week before the origin (cold study) and at it (warm), as the service
    would run them weekly."""
    stage = GroupStage()
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    config = replace(config, use_plans=with_plans)
    began = time.process_time()
    before = origin - timedelta(days=WARM_DAYS)
    inputs = _inputs(series, before, calendar, with_plans)
    model = tune_group(inputs, before, study, config)
    stage.views_before = _views(model, inputs, before, f"{before}")
    inputs = _inputs(series, origin, calendar, with_plans)
    model = tune_group(inputs, origin, study, config)
    stage.views = _views(model, inputs, origin, f"{origin}")
    stage.seconds = time.process_time() - began
    return stage, model


def _reference_lightgbm(
    series: Sequence[Series], origin: date, with_plans: bool
) -> tuple[dict[str, np.ndarray], float]:
    """The issue's untuned global LightGBM, written as a user would in a few lines."""
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import GlobalSklearnTransformer
    from sklearn.preprocessing import FunctionTransformer

    from retrain.group.model import week_of_year

    began = time.process_time()
    rows = []
    for s in series:
        end = _point(s, origin)
        first = max(0, end + 1 - HISTORY_DAYS)
        days = pd.date_range(s.start + timedelta(days=first), periods=end + HORIZON - first + 1)
        country = s.store_info.country if s.store_info else s.country
        region = s.store_info.subdivision if s.store_info else None
        names = holiday_names(
            CalendarConfig(country=country, subdivision=region), days[0].date(), days[-1].date()
        )
        holiday = np.array([1.0 if d.date() in names else 0.0 for d in days])
        frame = pd.DataFrame(
            {
                "unique_id": s.key,
                "ds": days,
                "y": np.r_[s.values[first : end + 1], np.full(HORIZON, np.nan)],
                "store": s.store,
                "holiday": holiday,
                "holiday_before": np.r_[holiday[1:], 0.0],
                "holiday_after": np.r_[0.0, holiday[:-1]],
            }
        )
        if with_plans:
            plan = day_plan(
                days[0].date(),
                len(days),
                plans_for(s.known_plans(origin), s.item),
                None,
                CalendarConfig(),
            )
            frame["promo"] = plan.promo
            frame["promo_before"] = np.r_[plan.promo[1:], 0.0]
            frame["promo_after"] = np.r_[0.0, plan.promo[:-1]]
            frame["school_holiday"] = plan.school_holiday
        rows.append(frame)
    data = pd.concat(rows, ignore_index=True)
    data["store"] = data["store"].astype("category")
    train = data[data["ds"] <= pd.Timestamp(origin)].copy()
    train["w"] = (train["y"] > 0).astype(float)
    future = data[data["ds"] > pd.Timestamp(origin)].drop(columns=["y", "store"])
    forecaster = MLForecast(
        models={
            "lgb": lgb.LGBMRegressor(
                n_estimators=600,
                num_leaves=63,
                learning_rate=0.03,
                n_jobs=1,
                verbosity=-1,
                random_state=0,
            )
        },
        freq="D",
        lags=[28, 35, 42, 49, 364],
        lag_transforms={28: [RollingMean(28)]},
        date_features=["dayofweek", "day", "month", week_of_year],
        target_transforms=[GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1))],
    )
    forecaster.fit(
        train, static_features=["store"], weight_col="w", dropna=False, validate_data=False
    )
    found = forecaster.predict(HORIZON, X_df=future)
    out = {
        str(k): np.maximum(g.sort_values("ds")["lgb"].to_numpy(float), 0.0)
        for k, g in found.groupby("unique_id")
    }
    return out, time.process_time() - began


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


def _timed(run: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Outcome:
    began = time.process_time()
    yhat, lower, upper = run()
    return Outcome(yhat, lower, upper, time.process_time() - began)


def _points(fit: SeriesFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([p["yhat"] for p in fit.points]),
        np.array([p["yhat_lower"] for p in fit.points]),
        np.array([p["yhat_upper"] for p in fit.points]),
    )


def _calendar(series: Series) -> CalendarConfig:
    base = CalendarConfig(country=series.country)
    return series.store_info.calendar(base) if series.store_info else base


def _plan(series: Series, history: History, origin: date, with_plans: bool) -> Any:
    return day_plan(
        history.start,
        len(history.values) + HORIZON,
        plans_for(series.known_plans(origin), series.item) if with_plans else (),
        series.store_info,
        CalendarConfig(country=series.country),
    )


def _kernel(
    series: Series,
    history: History,
    config: TuneConfig,
    fit_dir: Path,
    cold: bool,
    warm: WarmState,
    view: GroupView | None,
    plan: Any,
) -> tuple[Outcome, SeriesFit]:
    """Shelfcast's per-series kernel with a journal study, as a task opens it."""
    began = time.process_time()
    study = open_study(StudyRef(fit_dir / "optuna", 1), series.key, cold=cold, seed=0)
    options = FitOptions(fit_dir, "inprocess", 100, FitStats())
    fit = retrain_one(history, config, options, study, warm, lambda: None, view, plan)
    yhat, lower, upper = _points(fit)
    return Outcome(yhat, lower, upper, time.process_time() - began, fit.family), fit


def _shelfcast(
    series: Series,
    origin: int,
    day: date,
    config: TuneConfig,
    fit_dir: Path,
    stage: GroupStage | None,
    with_plans: bool,
) -> tuple[Outcome, SeriesFit]:
    """Cold a week before the origin, then the warm wave at it."""
    before = _history(series, origin - WARM_DAYS)
    view = stage.views_before.get(series.key) if stage else None
    plan = _plan(series, before, day - timedelta(days=WARM_DAYS), with_plans)
    _, first = _kernel(series, before, config, fit_dir, True, WarmState(), view, plan)
    history = _history(series, origin)
    view = stage.views.get(series.key) if stage else None
    plan = _plan(series, history, day, with_plans)
    warm = WarmState(choice=first.choice)
    return _kernel(series, history, config, fit_dir, False, warm, view, plan)


def _at_origin(
    series: Series,
    origin: int,
    day: date,
    config: TuneConfig,
    fit_dir: Path,
    stages: dict[str, GroupStage | None],
    with_baselines: bool,
) -> dict[str, Any]:
    history = _history(series, origin)
    y = history.values
    methods: dict[str, Outcome] = {}
    if with_baselines:
        names = holiday_names(config.calendar, history.start, history.end + timedelta(HORIZON))
        holidays = (
            pd.DataFrame({"holiday": list(names.values()), "ds": pd.to_datetime(list(names))})
            if names
            else None
        )
        open_y = np.where(y > 0, y, np.nan)
        methods["Prophet defaults"] = _timed(lambda: _prophet(history.start, y, None, fit_dir))
        methods["Prophet open days + holidays"] = _timed(
            lambda: _prophet(history.start, open_y, holidays, fit_dir)
        )
        for name in BASELINES[2:]:
            methods[name] = _timed(lambda name=name: _statsforecast(name, y))  # type: ignore[misc]
    families = {}
    for name, stage in stages.items():
        outcome, fit = _shelfcast(
            series, origin, day, config, fit_dir, stage, name != SHELFCAST_NO_PLANS
        )
        methods[name] = outcome
        families[name] = (fit.family, fit.method, fit.fallback_reason)
    return {
        "actual": series.values[origin + 1 : origin + 1 + HORIZON],
        "naive": naive_reference(series.values, origin),
        "methods": methods,
        "families": families,
    }


def run_series(
    job: tuple[
        Series, list[tuple[int, date]], TuneConfig, dict[date, dict[str, GroupStage | None]], bool
    ],
) -> dict[str, Any]:
    """The per-series methods at each origin (run in a worker process)."""
    series, origins, config, stages, with_baselines = job
    warnings.filterwarnings("ignore")
    config = replace(config, calendar=_calendar(series))
    out: dict[str, Any] = {"dataset": series.dataset, "key": series.key, "origins": {}}
    for origin, day in origins:
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
            out["origins"][day] = _at_origin(
                series, origin, day, config, Path(tmp), stages[day], with_baselines
            )
    return out


def score(results: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    """Relative MAE per origin (pooled), its mean, coverage and core-seconds per series."""
    table: dict[str, dict[str, float]] = {}
    origins = sorted({o for r in results for o in r["origins"]})
    for name in methods:
        rel, covered, counted, seconds, runs = [], 0, 0, 0.0, 0
        per_origin_cover = []
        for origin in origins:
            err = base = 0.0
            o_cov = o_cnt = 0
            for r in results:
                o = r["origins"].get(origin)
                if o is None or name not in o["methods"]:
                    continue
                m: Outcome = o["methods"][name]
                days = o["actual"] > 0
                a = o["actual"][days]
                yhat = m.yhat if name.startswith("Shelfcast") else np.maximum(m.yhat, 0)
                err += float(np.abs(yhat[days] - a).sum())
                base += float(np.abs(o["naive"][days] - a).sum())
                inside = int(((m.lower[days] <= a) & (a <= m.upper[days])).sum())
                covered += inside
                counted += int(days.sum())
                o_cov += inside
                o_cnt += int(days.sum())
                seconds += m.seconds
                runs += 1
            rel.append(err / base if base else float("nan"))
            per_origin_cover.append(o_cov / o_cnt if o_cnt else float("nan"))
        table[name] = {
            **{f"origin {i + 1}": v for i, v in enumerate(rel)},
            "mean": float(np.nanmean(rel)) if rel else float("nan"),
            "coverage": covered / counted if counted else float("nan"),
            "min_coverage": float(np.nanmin(per_origin_cover))
            if per_origin_cover
            else float("nan"),
            **{f"coverage {i + 1}": v for i, v in enumerate(per_origin_cover)},
            "core_s": seconds / runs if runs else float("nan"),
        }
    return table


def print_table(
    title: str, results: list[dict[str, Any]], days: list[date], methods: list[str]
) -> dict[str, dict[str, float]]:
    table = score(results, methods)
    present = [m for m in methods if table[m]["core_s"] == table[m]["core_s"]]
    baselines = [m for m in BASELINES if m in present]
    best = min(baselines, key=lambda n: table[n]["mean"]) if baselines else None
    print(f"\n{title}: {len(results)} series, origins {', '.join(map(str, days))}")
    heads = [f"origin {i + 1}" for i in range(len(days))]
    print(
        f"{'method':38}"
        + "".join(f"{h:>10}" for h in heads)
        + f"{'mean':>8}{'vs best':>9}{'cover80':>9}{'min cov':>9}{'core-s':>8}"
    )
    for name in present:
        row = table[name]
        gain = row["mean"] / table[best]["mean"] - 1 if best else float("nan")
        print(
            f"{name:38}"
            + "".join(f"{row[h]:>10.4f}" for h in heads)
            + f"{row['mean']:>8.4f}{gain:>+9.1%}{row['coverage']:>9.1%}"
            + f"{row['min_coverage']:>9.1%}{row['core_s']:>8.2f}"
        )
    for name in present:
        if name.startswith("Shelfcast warm"):
            cover = [row for h, row in table[name].items() if h.startswith("coverage ")]
            print(f"{name}, 80 % coverage by origin: " + " ".join(f"{c:.1%}" for c in cover))
    if best:
        print(f"best untuned per-series: {best}")
    return table


def _add_group_rows(
    results: list[dict[str, Any]],
    rows: dict[date, dict[str, dict[str, np.ndarray]]],
    seconds: dict[date, dict[str, float]],
) -> None:
    """Add the group-level methods (one forecast per series, no interval) to the results."""
    for r in results:
        for day, o in r["origins"].items():
            for name, forecasts in rows.get(day, {}).items():
                if r["key"] in forecasts:
                    yhat = forecasts[r["key"]]
                    o["methods"][name] = Outcome(yhat, yhat, yhat, seconds[day][name])


def _report_families(results: list[dict[str, Any]]) -> None:
    champions: Counter[str] = Counter()
    cost: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for o in r["origins"].values():
            family = (o["families"].get(SHELFCAST_WARM) or ("?",))[0] or "?"
            champions[family] += 1
            cost[family].append(o["methods"][SHELFCAST_WARM].seconds)
    print(
        "warm champions (series-origins, mean core-s of the warm kernel): "
        + ", ".join(f"{f} {n} {np.mean(cost[f]):.2f}s" for f, n in champions.most_common())
    )


def run_dataset(
    name: str, args: argparse.Namespace, config: TuneConfig, tune_config: GroupTuneConfig
) -> None:
    path = args.data_dir / (
        "rossmann_dev/train.csv.gz"
        if name == "rossmann"
        else "kaggle_store_item_demand/train.csv.gz"
    )
    country = "DE" if name == "rossmann" else None
    everything = load(path, name, 0, country)
    count = args.rossmann_series if name == "rossmann" else args.kaggle_series
    chosen = load(path, name, count, country)
    chosen_keys = {s.key for s in chosen}
    with_plans = any(s.plans for s in everything)
    last = max(s.end for s in everything)
    days = origin_days(last, args.origins)
    calendar = CalendarConfig(country=country)
    stages: dict[date, dict[str, GroupStage | None]] = {}
    group_rows: dict[date, dict[str, dict[str, np.ndarray]]] = defaultdict(dict)
    group_seconds: dict[date, dict[str, float]] = defaultdict(dict)
    new_items = [s for s in everything if s.key not in chosen_keys][: args.new_items]
    if len(new_items) < args.new_items:
        new_items = everything[-args.new_items :] if args.new_items else []
    new_results: dict[int, list[dict[str, Any]]] = {n: [] for n in NEW_ITEM_DAYS}
    began = time.perf_counter()
    for day in days:
        per_series = len(everything)
        stage, model = group_stage(everything, day, calendar, with_plans, tune_config)
        print(
            f"{name} {day}: group retrains {stage.seconds:.1f} core-s "
            f"({model.rows} rows, {model.params})",
            file=sys.stderr,
        )
        stages[day] = {SHELFCAST_WARM: stage}
        inputs = _inputs(everything, day, calendar, with_plans)
        group_rows[day][SHELFCAST_GLOBAL] = {k: v.forecast for k, v in stage.views.items()}
        group_seconds[day][SHELFCAST_GLOBAL] = stage.seconds / per_series
        t0 = time.process_time()
        untuned = fit_group(inputs, day, GroupParams(), with_plans, HORIZON, folds=0)
        group_rows[day][GLOBAL_UNTUNED] = untuned.predict(inputs, day)
        group_seconds[day][GLOBAL_UNTUNED] = (time.process_time() - t0) / per_series
        found, secs = _reference_lightgbm(everything, day, False)
        group_rows[day][GLOBAL_REFERENCE] = found
        group_seconds[day][GLOBAL_REFERENCE] = secs / per_series
        if with_plans:
            found, secs = _reference_lightgbm(everything, day, True)
            group_rows[day][GLOBAL_REFERENCE_PLANS] = found
            group_seconds[day][GLOBAL_REFERENCE_PLANS] = secs / per_series
            if not args.no_without_plans:
                stage_np, _ = group_stage(everything, day, calendar, False, tune_config)
                stages[day][SHELFCAST_NO_PLANS] = stage_np
        for cut in NEW_ITEM_DAYS if new_items else ():
            new_results[cut].extend(
                _new_items(
                    everything, new_items, day, cut, calendar, with_plans, model.params, config
                )
            )
    jobs = []
    for s in chosen:
        origins = [(_point(s, d), d) for d in days]
        origins = [
            (o, d) for o, d in origins if o - WARM_DAYS >= 364 and o + HORIZON < len(s.values)
        ]
        if origins:
            mine = {
                d: {
                    n: GroupStage(
                        {s.key: st.views_before[s.key]} if s.key in st.views_before else {},
                        {s.key: st.views[s.key]} if s.key in st.views else {},
                        st.seconds,
                    )
                    if st is not None
                    else None
                    for n, st in by_name.items()
                }
                for d, by_name in stages.items()
            }
            jobs.append((s, origins, config, mine, True))
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = []
        for n, found_one in enumerate(pool.imap_unordered(run_series, jobs), 1):
            results.append(found_one)
            print(f"\r{name}: {n}/{len(jobs)} series", end="", file=sys.stderr)
    print(f" ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
    _add_group_rows(results, group_rows, group_seconds)
    methods = [*BASELINES, GLOBAL_REFERENCE]
    if with_plans:
        methods.append(GLOBAL_REFERENCE_PLANS)
    methods += [GLOBAL_UNTUNED, SHELFCAST_GLOBAL, SHELFCAST_WARM]
    if with_plans and not args.no_without_plans:
        methods.append(SHELFCAST_NO_PLANS)
    table = print_table(name, results, days, methods)
    _report_families(results)
    reference = GLOBAL_REFERENCE_PLANS if with_plans else GLOBAL_REFERENCE
    for other in (reference, GLOBAL_UNTUNED):
        gain = table[SHELFCAST_WARM]["mean"] / table[other]["mean"] - 1
        print(f"Shelfcast warm vs {other}: {gain:+.1%}")
    if SHELFCAST_NO_PLANS in table:
        gain = table[SHELFCAST_WARM]["mean"] / table[SHELFCAST_NO_PLANS]["mean"] - 1
        print(f"Shelfcast warm vs without plans: {gain:+.1%}")
    for cut, found_new in new_results.items():
        if found_new:
            print_table(
                f"{name} new items, {cut} days of history", found_new, days, [SHELFCAST_WARM]
            )
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        with (args.save / f"{name}.pickle").open("wb") as out:
            pickle.dump({"results": results, "origin_days": days, "new": new_results}, out)


def _new_items(
    everything: list[Series],
    new_items: list[Series],
    day: date,
    cut: int,
    calendar: CalendarConfig,
    with_plans: bool,
    params: GroupParams,
    config: TuneConfig,
) -> list[dict[str, Any]]:
    """``new_items`` with only ``cut`` days of history at ``day``: a group model trained with
    them cut (the others whole), then each through the kernel's usual path."""
    cuts = {s.key: cut for s in new_items}
    inputs = _inputs(everything, day, calendar, with_plans, cuts)
    model = fit_group(inputs, day, params, with_plans, HORIZON, folds=4)
    views = _views(model, inputs, day, f"new-{day}")
    out = []
    for s in new_items:
        origin = _point(s, day)
        if origin + HORIZON >= len(s.values):
            continue
        history = _history(s, origin, cut)
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
            outcome, fit = _kernel(
                s,
                history,
                replace(config, calendar=_calendar(s)),
                Path(tmp),
                True,
                WarmState(),
                views.get(s.key),
                _plan(s, history, day, with_plans),
            )
        out.append(
            {
                "key": s.key,
                "origins": {
                    day: {
                        "actual": s.values[origin + 1 : origin + 1 + HORIZON],
                        "naive": naive_reference(s.values[origin + 1 - cut :], cut - 1),
                        "methods": {SHELFCAST_WARM: outcome},
                        "families": {SHELFCAST_WARM: (fit.family, fit.method, fit.fallback_reason)},
                    }
                },
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="rossmann,kaggle")
    parser.add_argument("--kaggle-series", type=int, default=30)
    parser.add_argument("--rossmann-series", type=int, default=20)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--new-items", type=int, default=5)
    parser.add_argument("--group-cold-trials", type=int, default=GroupTuneConfig.cold_trials)
    parser.add_argument("--no-without-plans", action="store_true")
    parser.add_argument("--rule", choices=["one_se", "margin"], default="one_se")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--save", type=Path, help="pickle every forecast here (to re-score)")
    args = parser.parse_args()
    if args.origins < 4:
        raise SystemExit("ACCURACY.md: at least four origins, spread over the seasons")
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = TuneConfig(selection=args.rule)
    tune_config = GroupTuneConfig(cold_trials=args.group_cold_trials)
    for name in args.datasets.split(","):
        run_dataset(name.strip(), args, config, tune_config)


if __name__ == "__main__":
    main()
