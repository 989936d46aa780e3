"""Avro container files written from raw record bodies: readable by the official avro library
and by fastavro, for every codec, with the writer schema from the header."""

from __future__ import annotations

import io
import random
from pathlib import Path

import avro.datafile
import avro.io
import fastavro
import pytest

from eventd.event.binary import put_long
from eventd.event.codec import encode
from eventd.event.schemas import SchemaStore
from eventd.roles.hdfs_uploader.container import COMPRESSORS, ContainerWriter

SCHEMAS = Path(__file__).resolve().parents[2] / "conf" / "schemas"

STORE = SchemaStore.load(str(SCHEMAS))


def impression(i: int) -> dict:
    return {"id": f"id-{i}", "type": "impression", "time": 1_700_000_000_000 + i, "received": 1_700_000_000_000,
            "host": "h", "input": "test", "schema_version": 1, "campaign_id": i % 7, "advertiser_id": None,
            "publisher_id": 3, "site_id": None, "zone_id": None, "country": "DE", "device": None, "ip": None,
            "user_agent": "ü" * (i % 5), "cost": 1000 + i, "revenue": i, "extra": {"k": str(i)}}


def write_file(path: Path, codec: str, records: list[dict], block_size: int = 1024) -> ContainerWriter:
    entry = STORE.latest["impression"]
    w = ContainerWriter(str(path), entry.raw, codec, block_size)
    for r in records:
        w.append(encode(entry, r)[10:])   # the body without the single-object header
    w.flush()
    return w


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_official_avro_and_fastavro_read_what_we_write(tmp_path: Path, codec: str) -> None:
    records = [impression(i) for i in range(500)]
    w = write_file(tmp_path / "f.avro", codec, records)
    assert w.records == 500 and w.size == (tmp_path / "f.avro").stat().st_size
    with open(tmp_path / "f.avro", "rb") as fh:
        reader = avro.datafile.DataFileReader(fh, avro.io.DatumReader())
        assert reader.get_meta("avro.codec").decode() == codec
        official = list(reader)
    assert official == records
    if codec == "zstandard":
        return   # fastavro 1.13 reads zstandard only with backports.zstd, which eventd does not need
    with open(tmp_path / "f.avro", "rb") as fh:
        fast = fastavro.reader(fh)
        assert fast.codec == codec
        assert list(fast) == records


def test_blocks_follow_block_size(tmp_path: Path) -> None:
    records = [impression(i) for i in range(300)]
    write_file(tmp_path / "f.avro", "null", records, block_size=2048)
    with open(tmp_path / "f.avro", "rb") as fh:
        blocks = list(fastavro.block_reader(fh))
    assert len(blocks) > 5
    assert sum(b.num_records for b in blocks) == 300


def test_empty_file_is_a_valid_container(tmp_path: Path) -> None:
    write_file(tmp_path / "f.avro", "deflate", [])
    with open(tmp_path / "f.avro", "rb") as fh:
        assert list(avro.datafile.DataFileReader(fh, avro.io.DatumReader())) == []


def test_put_long_matches_avro() -> None:
    for n in [0, -1, 1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1] + [random.randint(-2**62, 2**62) for _ in range(100)]:
        buf = io.BytesIO()
        avro.io.BinaryEncoder(buf).write_long(n)
        assert put_long(n) == buf.getvalue(), n
