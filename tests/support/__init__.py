"""Helpers the tests share (no fixtures: those live in the packages' ``conftest.py``).

- :mod:`tests.support.wait`: ``wait_for``, the one way a test waits on a condition.
- :mod:`tests.support.events`: valid ``pos_sale``, ``plan`` and ``store`` messages, a
  series' daily history as sales.
- :mod:`tests.support.series`: daily series as numbers, written into ``daily_sales``.
- :mod:`tests.support.topics`: what a topic holds; the forecast keys on it.
- :mod:`tests.support.tables`: what the service's Delta tables hold.
- :mod:`tests.support.pipeline`: the ingest pipeline on raw Kafka records, without Spark.
- :mod:`tests.support.ingest`: ``shelfcast ingest`` killed at random points, and the checks
  after.
- :mod:`tests.support.service`: ``shelfcast run`` as a process of its own.
- :mod:`tests.support.retrain`: retraining settings and dates small enough for tests.
- :mod:`tests.support.data`: the Kaggle sample shipped in ``tests/data``.
- :mod:`tests.support.dashboard`: what the Grafana dashboard reads.

``bench/postgres.py`` (PostgreSQL and ``mlflow server``) is shared with the benchmarks, so it
lives in ``bench/``, which never imports ``tests``.
"""
