"""The test servers themselves: Kafka takes topics and keeps data across a restart; S3 enforces auth."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_kafka_topic_has_three_partitions_with_leaders(kafka, kafka_topic):
    topic = kafka_topic(3)
    admin = kafka.admin()
    try:
        (desc,) = admin.describe_topics([topic])
    finally:
        admin.close()
    assert len(desc["partitions"]) == 3
    assert kafka.bootstrap.startswith("127.0.0.1:")


def test_kafka_restart_keeps_port_and_data(kafka, kafka_topic):
    from kafka import KafkaConsumer, KafkaProducer

    topic = kafka_topic(3)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", max_block_ms=10000)
    for i in range(30):
        producer.send(topic, f"event-{i}".encode(), partition=i % 3)
    producer.flush(10)
    producer.close()
    bootstrap = kafka.bootstrap

    kafka.restart()

    assert kafka.bootstrap == bootstrap
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        values = sorted(m.value.decode() for m in consumer)
    finally:
        consumer.close()
    assert values == sorted(f"event-{i}" for i in range(30))


def test_kafka_stop_then_start(kafka):
    kafka.stop()
    assert not kafka.running
    kafka.start()
    admin = kafka.admin()
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()


def test_s3_refuses_wrong_credentials(s3):
    from minio.error import S3Error

    assert s3.client().list_buckets() is not None
    with pytest.raises(S3Error) as err:
        s3.client(secret_key="not-the-secret-key-of-this-server-000000").list_buckets()
    assert err.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied")
