"""eventd: carries ad-platform events from the ad servers, through Apache Kafka, to every sink.

The package layout is the architecture:

- ``eventd.config``  – the YAML file a sysadmin edits, validated once into frozen dataclasses;
- ``eventd.event``   – the event envelope, money, Avro schemas and the single-object codec;
- ``eventd.kafka``   – the Kafka producer, the shared consumer loop (batching, commit after
  the sink confirms, dead-letter topic) and topic administration;
- ``eventd.roles``   – one sub-package per role (collector, ClickHouse loader, balance
  aggregator, HDFS uploader), each started by ``eventd role NAME``;
- ``eventd.cli``     – the ``eventd`` command.
"""

__version__ = "0.1.0"
