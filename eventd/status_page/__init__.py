"""The daemon's status page: a small read-only web page and its JSON, loopback by default.

``serve_status_page(host, port, snapshot)`` starts it in a background thread and returns the
server (``.url``, ``.close()``). ``GET /`` is the page, ``GET /status.json`` the current snapshot;
``GET /healthz`` answers ``ok``; every other method is refused (405). The page polls the JSON every
``refresh`` ms (2000; ``/?refresh=500`` to change it, minimum 200) and draws, per role, live charts
of throughput and Kafka lag over the last points it received (plain JavaScript and SVG, served
from this package: no CDN, nothing from outside), the health of each role and the recent alerts.

The snapshot is a callable returning a dict; it is called at most once per ``cache_seconds`` (1 s)
however many browsers poll, from the server's threads (it must be thread-safe). Its format::

    {
      "generated": 1700000000.5,   # optional: unix seconds of the data (added when absent)
      "node": "ads-7",             # optional: the machine
      "healthy": true,             # optional: overall (default: every role healthy)
      "roles": [                   # one entry per role, in display order
        {"name": "collector",      # required
         "healthy": true,          # required
         "state": "RUNNING",       # optional text: the supervisor's state
         "processes": 2,           # optional: configured processes ...
         "running": 2,             # ... and how many run
         "restarts": 0,            # optional
         "uptime": 3600.0,         # optional, seconds
         "rate": 1234.5,           # optional: events per second now (charted)
         "lag": 17,                # optional: messages behind in Kafka, all partitions (charted)
         "last_error": ""}         # optional
      ],
      "alerts": [                  # optional, newest first: the monitor's messages, as sent to its
        {"kind": "alert",          # alert topic (docs/roles/monitor.md), e.g. from
         "time": "2023-11-14T22:14:00Z",   # eventd.roles.monitor.state.read_recent_alerts(
         "severity": "warning",    #     cfg.monitor.state_file)
         "rule": "traffic-host", "key": "web-07",
         "summary": "traffic drop: host=web-07: ..."}
      ]
    }

``snapshot_from_report`` builds this from the daemon's ``eventd status`` report.

Values are shown as given (text is always inserted as text, never as HTML). A snapshot that raises
gives a 503 with ``{"error": ...}``; the page then says the status is unavailable and keeps its
charts.
"""

from eventd.status_page.server import StatusServer, serve_status_page
from eventd.status_page.snapshot import snapshot_from_report

__all__ = ["serve_status_page", "StatusServer", "snapshot_from_report"]
