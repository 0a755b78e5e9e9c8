"""The Prophet engine: fitting and predicting Prophet models fast and in process (the MAP
fit solved by Newton steps), and validation folds prepared once per study."""
