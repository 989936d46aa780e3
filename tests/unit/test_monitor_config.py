"""The ``monitor:`` section: the sample shows exactly the defaults, and every mistake in a rule is
reported as FILE:LINE: key.path: reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from eventd.config import load_config
from eventd.config.monitor import ClockRuleConfig, CtrRuleConfig, FloodRuleConfig, MonitorConfig, TrafficRuleConfig
from eventd.config.reader import Section
from eventd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "eventd.yaml"


def defaults(state_dir: str) -> MonitorConfig:
    section = Section("<none>", "monitor", yaml.compose("{}"), 1)
    return MonitorConfig.read(section, state_dir)


def test_the_sample_section_is_the_defaults() -> None:
    cfg = load_config(str(SAMPLE))
    assert cfg.monitor == defaults(cfg.node.state_dir)
    assert cfg.monitor.role.enabled is False
    kinds = {type(r) for r in cfg.monitor.rules}
    assert kinds == {TrafficRuleConfig, CtrRuleConfig, FloodRuleConfig, ClockRuleConfig}
    assert cfg.monitor.event_types is None          # traffic-host and clock-host read every type


def with_monitor(tmp_path: Path, monitor_yaml: str) -> Path:
    """The sample with its monitor section replaced by ``monitor_yaml``."""
    shutil.copytree(REPO / "conf" / "schemas", tmp_path / "schemas", dirs_exist_ok=True)
    text = SAMPLE.read_text()
    text = text[:text.index("\nmonitor:")] + "\nmonitor:\n" + monitor_yaml
    path = tmp_path / "eventd.yaml"
    path.write_text(text)
    return path


def error(tmp_path: Path, monitor_yaml: str) -> str:
    path = with_monitor(tmp_path, monitor_yaml)
    with pytest.raises(ConfigError) as exc:
        load_config(str(path))
    return str(exc.value).replace(str(path), "FILE")


def line(tmp_path: Path, needle: str) -> int:
    text = (tmp_path / "eventd.yaml").read_text().splitlines()
    return next(i for i, s in enumerate(text, 1) if needle in s)


def test_unknown_key_in_a_rule(tmp_path: Path) -> None:
    msg = error(tmp_path, "  rules:\n    - {name: a, kind: flood, by: ip, max_events: 5, windw: 1m}\n")
    assert msg.startswith(f"FILE:{line(tmp_path, 'windw')}: monitor.rules[0].windw: unknown key")


@pytest.mark.parametrize("rule, key, reason", [
    ("{name: a, kind: traffic, by: host, step: 1m, window: 90s}", "window", "whole multiple of step"),
    ("{name: a, kind: traffic, by: host, baseline: 61s, step: 1m}", "baseline", "whole multiple of step"),
    ("{name: a, kind: traffic, by: host, spike_above: 0.5}", "spike_above", "must be above 1"),
    ("{name: a, kind: traffic, by: host, drop_below: 0, spike_above: 0}", "drop_below", "can never fire"),
    ("{name: a, kind: flood, by: ip}", "max_events", "needs max_events or max_share"),
    ("{name: a, kind: ctr, by: site_id, event_types: [click]}", "event_types", "takes no event_types"),
    ("{name: a, kind: anomaly, by: ip}", "kind", "not allowed"),
    ("{name: a, by: ip}", "kind", "missing required value"),
    ("{name: A!, kind: clock, by: host}", "name", "must match"),
    ("{name: a, kind: clock, by: 'site id'}", "by", "not a field name"),
    ("{name: a, kind: traffic, by: host, step: 1s, window: 1m, baseline: 1h}", "step", "at most 2000"),
])
def test_rule_errors_name_the_key(tmp_path: Path, rule: str, key: str, reason: str) -> None:
    msg = error(tmp_path, f"  rules:\n    - {rule}\n")
    assert f"monitor.rules[0].{key}: " in msg and reason in msg, msg


def test_duplicate_rule_names(tmp_path: Path) -> None:
    msg = error(tmp_path, "  rules:\n    - {name: a, kind: clock, by: host}\n    - {name: a, kind: clock, by: ip}\n")
    assert "monitor.rules[1].name: duplicate rule name 'a'" in msg


def test_an_empty_rule_list_is_refused(tmp_path: Path) -> None:
    assert "monitor.rules: needs at least 1 item" in error(tmp_path, "  rules: []\n")


def test_more_than_one_process_is_refused(tmp_path: Path) -> None:
    msg = error(tmp_path, "  processes: 2\n")
    assert f"FILE:{line(tmp_path, 'processes: 2')}: monitor.processes: must be 1" in msg


def test_webhook_must_be_http(tmp_path: Path) -> None:
    assert "monitor.webhook.url: 'ftp://x' is not an http" in error(tmp_path, "  webhook: {url: 'ftp://x'}\n")


def test_event_types_are_what_the_rules_read(tmp_path: Path) -> None:
    path = with_monitor(tmp_path, "  rules:\n    - {name: a, kind: flood, by: ip, max_events: 5}\n"
                                  "    - {name: b, kind: ctr, by: zone_id}\n")
    assert load_config(str(path)).monitor.event_types == ("click", "impression")
