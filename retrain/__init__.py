"""Retraining: the per-series kernel and its edges (Delta, Optuna, MLflow, Kafka, Ray)."""

import logging

# Prophet logs an ERROR on import when plotly is absent; plotly serves only its interactive
# plots, which Shelfcast never draws, so every command and Ray worker printed a false alarm.
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
