"""``eventd replay``: legacy NDJSON event files into Kafka or straight into one sink, validated
and wrapped exactly as the collector does, idempotently (see docs/roles/replay.md).

Modules: ``command`` (CLI wiring, exit codes) → ``pipeline`` (per line: parse, reject, deliver,
checkpoint) → ``sinks`` (the target contract, Kafka, dry run) and ``direct`` (the consumer roles'
own sinks for ``--to clickhouse|balances|hdfs``); ``reader`` (plain/.gz/stdin lines), ``ids``
(deterministic ids), ``ledger`` (resume points), ``rejects``, ``progress``, ``summary``;
``testdata`` (files with known totals for the tests and the benchmark).
"""
