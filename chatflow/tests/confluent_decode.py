"""Reads a topic with Confluent's Python client and its Avro deserializer,
against chatflow's built-in schema registry; prints one JSON line a record."""

import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

brokers, registry, topic = sys.argv[1:4]
deserialize = AvroDeserializer(SchemaRegistryClient({"url": registry}))
consumer = Consumer({"bootstrap.servers": brokers, "group.id": "confluent-decode", "enable.auto.commit": False})
metadata = consumer.list_topics(topic, timeout=10)
partitions = sorted(metadata.topics[topic].partitions)
ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
position = {p: 0 for p in partitions}
while any(position[p] < ends[p] for p in partitions):
    message = consumer.poll(5)
    if message is None:
        raise SystemExit("timed out before the end of the topic")
    if message.error():
        raise SystemExit(str(message.error()))
    value = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
    payload = value["payload"]
    if isinstance(payload, tuple):  # (record name, fields) when the union is tagged
        payload = payload[1]
    value["payload"] = payload
    print(json.dumps({"partition": message.partition(), "offset": message.offset(),
                      "key": message.key().decode(), "value": value}, default=str))
    position[message.partition()] = message.offset() + 1
consumer.close()
