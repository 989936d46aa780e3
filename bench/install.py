"""Installing the peers the benchmarks compare eventd with. Called by ``bench/run`` only — never by
the tests (the smoke test passes ``--no-install`` and reports a missing peer as "not installed").

- rsyslog + omkafka: ``apt-get install rsyslog-kafka``.
- syslog-ng + its Kafka destination: Debian's ``syslog-ng-core`` conflicts with ``rsyslog`` (both
  provide ``system-log-daemon``), so it cannot be installed beside it. Its two packages are fetched
  with ``apt-get download`` and unpacked into the bench state directory; their (non-conflicting)
  library dependencies are installed normally. It runs from there with its own module path.

Package post-install scripts must not start system daemons (rsyslog would take /dev/log): a
``policy-rc.d`` answering 101 is in place during ``apt-get``, as ``init/devstack`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

RSYSLOG_PKGS = ("rsyslog", "rsyslog-kafka")
SYSLOG_NG_DEBS = ("syslog-ng-core", "syslog-ng-mod-rdkafka")
SYSLOG_NG_LIBS = ("libivykis0", "libnet1", "libwrap0", "libjson-c5", "libglib2.0-0", "libcap2", "libpcre3",
                  "libssl3", "libsystemd0", "librdkafka1")
POLICY = Path("/usr/sbin/policy-rc.d")


def state_dir() -> Path:
    """Where unpacked peers live between runs: ``$EVENTD_BENCH_DIR`` or /var/lib/eventd-bench."""
    return Path(os.environ.get("EVENTD_BENCH_DIR") or "/var/lib/eventd-bench")


def syslog_ng_root() -> Path:
    return state_dir() / "syslog-ng"


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def missing_debs(pkgs: tuple[str, ...]) -> list[str]:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *pkgs], capture_output=True, text=True)
    ok = {line.split()[0] for line in r.stdout.splitlines() if line.endswith("install ok installed")}
    return sorted(set(pkgs) - ok)


def _apt(args: list[str], log: Path, cwd: Path | None = None) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    opts = ["-o", "DPkg::Lock::Timeout=600", "-o", "Dpkg::Options::=--force-confdef",
            "-o", "Dpkg::Options::=--force-confold"]
    with open(log, "ab") as out:
        r = subprocess.run(["apt-get", *opts, *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if r.returncode:
        raise SystemExit(f"bench: apt-get {' '.join(args)} failed; read {log}")


def apt_install(pkgs: list[str], log: Path) -> None:
    """``apt-get update`` + ``install`` with invoke-rc.d blocked, restoring any previous policy-rc.d."""
    if os.geteuid() != 0:
        raise SystemExit(f"bench: need root to install {' '.join(pkgs)}")
    _say(f"apt-get install {' '.join(pkgs)}")
    saved = POLICY.read_bytes() if POLICY.exists() else None
    try:
        POLICY.write_text("#!/bin/sh\n# written by eventd bench/install.py during apt-get install\nexit 101\n")
        POLICY.chmod(0o755)
        _apt(["update", "-q"], log)
        _apt(["install", "-y", "-q", "--no-install-recommends", *pkgs], log)
    finally:
        if saved is None:
            POLICY.unlink(missing_ok=True)
        else:
            POLICY.write_bytes(saved)
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", "rsyslog", "syslog"], capture_output=True)


def unpack_syslog_ng(log: Path) -> None:
    """``apt-get download`` syslog-ng's packages and unpack them under :func:`syslog_ng_root`."""
    root = syslog_ng_root()
    if (root / "usr" / "sbin" / "syslog-ng").exists():
        return
    debs = state_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _say(f"apt-get download {' '.join(SYSLOG_NG_DEBS)} (unpacked into {root}: it conflicts with rsyslog)")
    _apt(["download", *SYSLOG_NG_DEBS], log, cwd=debs)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted(debs.glob("syslog-ng-*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)


def install_peers() -> None:
    """Everything the peers need; quick when already there."""
    state_dir().mkdir(parents=True, exist_ok=True)
    log = state_dir() / "install.log"
    missing = missing_debs(RSYSLOG_PKGS + SYSLOG_NG_LIBS)
    if missing:
        apt_install(missing, log)
    unpack_syslog_ng(log)


def rsyslogd() -> str | None:
    return shutil.which("rsyslogd") or (("/usr/sbin/rsyslogd") if os.path.exists("/usr/sbin/rsyslogd") else None)


def rsyslog_has_kafka() -> bool:
    return any(Path(d).joinpath("omkafka.so").exists() for d in ("/usr/lib/x86_64-linux-gnu/rsyslog",
                                                                  "/usr/lib/rsyslog"))


def syslog_ng() -> tuple[list[str], dict[str, str]] | None:
    """(argv prefix, environment) to run the unpacked syslog-ng, or None if it is not unpacked."""
    root = syslog_ng_root()
    exe = root / "usr" / "sbin" / "syslog-ng"
    if not exe.exists():
        return None
    libdirs = [str(p) for p in (root / "usr" / "lib" / "syslog-ng", root / "usr" / "lib" / "x86_64-linux-gnu")
               if p.is_dir()]
    mods = next((root / "usr" / "lib" / "syslog-ng").glob("3.*"), None)
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs))
    return [str(exe), f"--module-path={mods}"], env

