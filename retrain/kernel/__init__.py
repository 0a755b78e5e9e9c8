"""The per-series kernel: a series' history, its calendar, the model families, their tuning
and selection, and the fallback chain that always ends in a forecast. Pure: no Ray, Delta,
Kafka or MLflow (Optuna's study is passed in)."""
