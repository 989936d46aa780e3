"""eventd: the ad-platform event pipeline (collector → Kafka → ClickHouse, MariaDB, HDFS)."""

from setuptools import find_packages, setup

setup(
    name="eventd",
    version="0.1.0",
    description="Ad-platform event pipeline: collector, Kafka, ClickHouse statistics, MariaDB balances, HDFS archive",
    python_requires=">=3.11",
    packages=find_packages(include=["eventd", "eventd.*"]),
    package_data={"eventd.status_page": ["static/*"]},   # the status page's HTML, JS and CSS
    install_requires=[
        # The user's choices. kafka-python is replaced by confluent-kafka (below) and kept for the
        # tests only, as an independent client to check what eventd wrote.
        "avro==1.12.2",
        "clickhouse-driver==0.2.11",
        "PyMySQL==1.2.4",
        # pywebhdfs (the user's choice) is not used: its DataNode leg ignores timeouts, so a hung
        # DataNode stalls it; eventd/roles/hdfs_uploader/webhdfs.py bounds every call (docs/architecture.md).
        "supervisor==4.3.0",
        "PyYAML>=6.0,<7",
        # Added, each for a measured or documented reason (docs/architecture.md#dependencies).
        "fastavro==1.13.1",        # schema parsing, fingerprints and resolution; ~14x the avro package
        "confluent-kafka==2.16.1", # librdkafka: 7x less CPU per message than kafka-python, no wedged producer
        "crc32c==2.9.post0",       # the collector's queue and tail checksums, in C
        "zstandard==0.25.0",       # the zstandard Avro codec
        "prometheus-client==0.26.0",  # metrics endpoint
        "python-snappy==0.7.3",    # the snappy Avro codec of HDFS files; the official avro reader uses it too
    ],
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.3",
                             # the tests read and write Kafka with a client independent of eventd's
                             "kafka-python==3.0.12", "lz4==4.4.5"]},
    entry_points={"console_scripts": ["eventd = eventd.cli:main"]},
)
