"""HDFS paths and file names of the uploader, and reading them back."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from eventd.roles.hdfs_uploader.layout import (GroupKey, final_name, final_path, hour_of, is_tmp_of, parse_final,
                                               tmp_path)

T = int(datetime(2026, 3, 9, 17, 42, tzinfo=timezone.utc).timestamp() * 1000)


def test_final_path_partitions_by_type_date_and_hour_of_event_time() -> None:
    key = GroupKey("click", hour_of(T))
    assert final_path("/eventd/events", "events.click", 4, 120, 3456, key) == \
        "/eventd/events/type=click/date=2026-03-09/hour=17/events.click+4+0000000120+0000003456.avro"


def test_names_parse_back() -> None:
    name = final_name("events.click", 4, 120, 12345678901)
    parsed = parse_final(name)
    assert parsed is not None and (parsed.topic, parsed.partition, parsed.first, parsed.last) == \
        ("events.click", 4, 120, 12345678901)
    assert parse_final("events.click+4+1+2.avro.tmp") is None
    assert parse_final("_SUCCESS") is None


def test_temporary_names_belong_to_one_partition() -> None:
    path = tmp_path("/b", "events.click", 4, 1, 2, GroupKey("click", hour_of(T)))
    name = path.rsplit("/", 1)[1]
    assert path.startswith("/b/_tmp/")
    assert is_tmp_of(name, "events.click", 4)
    assert not is_tmp_of(name, "events.click", 40)
    assert not is_tmp_of(name, "events.clic", 4)
    assert not is_tmp_of(final_name("events.click", 4, 1, 2), "events.click", 4)


def test_hours_before_1970_and_limits() -> None:
    assert GroupKey("x", hour_of(-1)).date_hour() == ("1969-12-31", "23")
    assert GroupKey("x", hour_of(0)).date_hour() == ("1970-01-01", "00")
    with pytest.raises(ValueError, match="outside years"):
        hour_of(10**17)
    with pytest.raises(ValueError, match="outside years"):
        hour_of(-10**17)
