"""The stores a retrain reads and writes: history from Delta, Optuna studies, the MLflow
registry and its retention, and forecasts out to Kafka."""
