# The one Shelfcast image: the service, and the Spark and Ray nodes it runs on (their Python
# workers must import the same package at the same versions), and the MLflow server.

# The jars (Spark's Kafka connector, delta-spark; the broker's too), fetched by the same
# script and poms as scripts/setup, so the image runs the jar list the tests ran.
FROM maven:3.9.9-eclipse-temurin-17 AS jars
WORKDIR /src
COPY scripts/fetch-jars scripts/fetch-jars
COPY scripts/jars scripts/jars
RUN SHELFCAST_JARS_DIR=/opt/shelfcast/jars ./scripts/fetch-jars

FROM python:3.11.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 shelfcast \
 && mkdir -p /data && chown shelfcast /data

WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY contracts ./contracts
COPY streaming ./streaming
COPY retrain ./retrain
COPY shelfcast ./shelfcast
RUN pip install --no-cache-dir -c constraints.txt ".[cluster]"
COPY --from=jars /opt/shelfcast/jars /opt/shelfcast/jars

USER shelfcast
ENV SHELFCAST_DATA_DIR=/data \
    SHELFCAST_JARS_DIR=/opt/shelfcast/jars \
    SHELFCAST_EMBEDDED_BROKER=false \
    SHELFCAST_EMBEDDED_RAY=false \
    PYTHONUNBUFFERED=1
EXPOSE 9464
ENTRYPOINT ["tini", "--"]
CMD ["shelfcast", "run"]
