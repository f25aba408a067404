"""Reading back what a tool published: every record of some topics, from the beginning."""

from __future__ import annotations

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def read_all(bootstrap: str, topics: list[str]) -> list[ConsumerRecord]:
    """Every record on ``topics`` (all partitions), by partition in offset order; returns once
    nothing new arrived for 1.5 s."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1500)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return list(consumer)
    finally:
        consumer.close()
