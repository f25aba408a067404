"""BatchPublisher against the real broker: every record arrives once, on the partition Kafka's
default partitioner gives its key (so a consumer of one patient's partition sees all of that
patient's outputs), in the order it was given, also when a partition's records need several
record batches."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from worker.tools.embedded import EmbeddedBroker, create_topics
from worker.stream.faust_options import PRODUCER_BATCH_BYTES
from worker.stream.messages import OutRecord
from worker.stream.publisher import BatchPublisher, key_partition

pytestmark = [pytest.mark.integration]

PARTITIONS = 4


Received = dict[int, list[tuple[bytes | None, bytes]]]  # partition -> (key, value) in offset order


async def _publish_then_read(bootstrap: str, topic: str, records: list[OutRecord]) -> Received:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=PRODUCER_BATCH_BYTES)
    await producer.start()
    try:
        await BatchPublisher(lambda: producer).publish(records)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        got: Received = defaultdict(list)
        for _ in range(100):
            for tp, batch in (await consumer.getmany(timeout_ms=200)).items():
                got[tp.partition].extend((r.key, r.value) for r in batch)
            if sum(len(v) for v in got.values()) >= len(records):
                break
        return got
    finally:
        await consumer.stop()


def test_records_land_on_their_keys_partitions_in_order_across_several_batches(
    broker: EmbeddedBroker, unique: str
) -> None:
    topic = f"published-{unique}"
    create_topics(broker.bootstrap, [topic], partitions=PARTITIONS)
    # 40 patients x 100 records of ~600 B: ~600 KB per partition, several record batches each.
    records = [
        OutRecord(topic, f"patient-{p:03d}".encode(), f"{p:03d}:{i:04d}:".encode() + b"x" * 590)
        for i in range(100) for p in range(40)
    ]
    records += [OutRecord(topic, None, b"unkeyed-%d" % i) for i in range(5)]
    assert sum(len(r.value) for r in records) / PARTITIONS > 2 * PRODUCER_BATCH_BYTES

    got = asyncio.run(_publish_then_read(broker.bootstrap, topic, records))

    assert sorted(v for part in got.values() for _, v in part) == sorted(r.value for r in records)
    for partition, received in got.items():
        keyed = [(k, v) for k, v in received if k is not None]
        for key, _ in keyed:
            # kafka-python's murmur2 is a second port of the Java client's: the two must agree.
            assert partition == key_partition(key, PARTITIONS) == (kafka_python_murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        sent_here = [
            (r.key, r.value) for r in records if r.key is not None and key_partition(r.key, PARTITIONS) == partition
        ]
        assert keyed == sent_here, f"partition {partition} lost the order it was given"
