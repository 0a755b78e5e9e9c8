#!/bin/sh
# What the Kafka user "shelfcast" may do in the secured profile, and nothing else: its five
# topics (pos.sales, pos.plans, pos.stores, pos.sales.dlq, forecasts: create, read, write), and
# its consumer groups (the status and console readers, and Spark's Kafka source). Idempotent: run on every start.
#   KAFKA_ACLS      the kafka-acls command (default: the apache/kafka image's)
#   BOOTSTRAP       the broker (default kafka:9092)
#   ADMIN_CONFIG    the admin client's properties (default: the mounted admin.properties)
set -eu
acls="${KAFKA_ACLS:-/opt/kafka/bin/kafka-acls.sh}"
bootstrap="${BOOTSTRAP:-kafka:9092}"
admin="${ADMIN_CONFIG:-/etc/kafka/secure/admin.properties}"
allow() {
  "$acls" --bootstrap-server "$bootstrap" --command-config "$admin" \
    --add --allow-principal User:shelfcast "$@" >/dev/null
}
for topic in pos.sales pos.plans pos.stores pos.sales.dlq forecasts; do
  allow --topic "$topic" --operation Create --operation Describe --operation DescribeConfigs \
    --operation Read --operation Write
done
for group in shelfcast spark-kafka-source; do
  allow --group "$group" --resource-pattern-type prefixed --operation Read --operation Describe
done
echo "acls: User:shelfcast may use pos.sales, pos.plans, pos.stores, pos.sales.dlq, forecasts"
