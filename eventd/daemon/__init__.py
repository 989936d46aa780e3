"""The daemon: ``eventd run`` keeps one supervised process per enabled role (``processes`` of them
for a role that scales out), under ``supervisord``, and answers ``eventd status|start|stop|restart``.

Who does what:

- ``main.py``        the manager process (``eventd run``): signals, systemd notifications, the main loop.
- ``supervisord.py`` runs supervisord as the manager's child and forwards its output to stderr.
- ``supervisor_conf.py`` renders supervisord.conf from the eventd config (one ``[program]`` per role).
- ``snapshot.py``    each role's effective config: its fingerprint (what a reload compares) and the
                     frozen copy a role process starts from.
- ``child.py``       the entry point of a role process (``python -m eventd.daemon.child``).
- ``runstate.py``    small JSON files in ``daemon.run_dir``: each process's last run, the manager's view.
- ``policy.py``      the restart policy supervisor lacks: exit-code classes, crash backoff.
- ``reload.py``      SIGHUP: validate, then restart only the roles whose effective config changed.
- ``rpc.py``         the XML-RPC client of supervisord's unix socket.
- ``report.py``      what ``eventd status`` shows; ``probe.py`` reads rates and lag from the roles' metrics.
- ``status_page.py`` serves ``eventd/status_page`` (the web page) on ``daemon.status_listen``.
- ``control.py``     ``eventd status`` and ``eventd start|stop|restart ROLE``.
- ``systemd.py``     sd_notify: READY, RELOADING, STOPPING, WATCHDOG; nothing outside systemd.
"""
