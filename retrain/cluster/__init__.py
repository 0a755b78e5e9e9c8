"""The Ray side: the driver's client, the detached coordinator actor with its queue and
sinks, and the body of one retrain task."""
