"""Hosts for tests that need several machines: Linux network namespaces made with `ip netns`, one per
host, tied by veth links to a bridge in the first host, so that each host has an address of its own
and a link that a test can cut.

    root namespace (the test: an operator's machine)  10.X.Y.254 ─┐
    host a  (bridge, 10.X.Y.1)  ◄───────────────────────────────────┤
    host b  10.X.Y.2  ── veth ──► a's bridge                        │ (the link `cut()` sets down)
    host c  10.X.Y.3  ── veth ──► a's bridge                        │

Every command run on a host also gets a UTS namespace of its own with the host's name, so what
aiflow names after `socket.gethostname()` (workers, client ids) tells the hosts apart. The hosts share
the machine's filesystem: nothing isolates it, the tests simply give each host folders of its own.

Making namespaces needs root and `ip`; `require_netns()` skips a test without them, except in CI
(`CI=true`), where it fails.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PostgresCluster, process_alive


def require_netns() -> None:
    """Skip (or, in CI, fail) unless this process may make network namespaces."""
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    reason = ("network namespaces need root" if os.geteuid() != 0
              else f"network namespaces need {', '.join(missing)}" if missing else "")
    if not reason:
        probe = f"aiflow-probe-{uuid.uuid4().hex[:6]}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode == 0:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        else:
            reason = f"`ip netns add` fails here: {made.stderr.strip()}"
    if reason:
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the multi-host test")
        pytest.skip(reason)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> str:
    """A 10.X.Y.0/24 no interface or route of this machine uses: its first three octets."""
    used = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used += subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    rng = random.Random()
    for _ in range(100):
        prefix = f"10.{rng.randrange(200, 255)}.{rng.randrange(1, 255)}"
        if f"{prefix}." not in used and "10.0.0.0/8" not in used:
            return prefix
    raise RuntimeError("no free 10.X.Y.0/24 subnet for the test's hosts")


@dataclass
class Host:
    """One machine: a network namespace with an address, a name, and folders of its own."""

    name: str  # "a", "b", ...
    netns: str
    address: str
    hostname: str
    dir: Path  # this host's folders (its aiflow homes, the logs of what the test ran there)
    link: str | None = None  # its veth end in host a's namespace (None for host a itself)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, args: list[str]) -> list[str]:
        """`args` run on this host: in its network namespace, with a UTS namespace named after it."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostname, *args]

    def start(self, args: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        """A process of this host (its own session), output appended to `log`."""
        with open(log, "ab") as out:
            process = subprocess.Popen(self.command(args), env=dict(env), stdout=out, stderr=out,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def run(self, args: list[str], env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command on this host to its end; its output is returned."""
        return subprocess.run(self.command(args), env=dict(env), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        """Every process in this host's network namespace."""
        done = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()]

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of this host, as a power cut would, and wait until they are gone."""
        for _ in range(5):  # a process may fork while its siblings die
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
        for process in self.processes:
            try:
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass


@dataclass
class Network:
    """Hosts on one subnet, reached from the test's own namespace at `observer`."""

    hosts: dict[str, Host]
    observer: str  # the test process's address on the hosts' network
    root_link: str  # its veth end in the root namespace

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, name: str) -> None:
        """Take a host off the network, as a pulled cable would: its link to the bridge goes down. Its
        processes run on, unable to reach anyone."""
        link = self.hosts[name].link
        assert link is not None, "host a holds the bridge: cut another"
        _ip("-n", self.hosts["a"].netns, "link", "set", link, "down")


@contextmanager
def network(base: Path, names: tuple[str, ...] = ("a", "b", "c")) -> Iterator[Network]:
    """Hosts `names` (the first holds the bridge), each with a folder under `base`; everything —
    processes, namespaces, links — is removed afterwards, whatever happened."""
    require_netns()
    tag = uuid.uuid4().hex[:6]
    subnet = _free_subnet()
    hosts: dict[str, Host] = {}
    root_link = f"af{tag}o"
    try:
        for index, name in enumerate(names):
            folder = base / f"host-{name}"
            folder.mkdir(parents=True, exist_ok=True)
            host = Host(name, f"aiflow-{name}-{tag}", f"{subnet}.{index + 1}", f"aiflow-host-{name}", folder)
            _ip("netns", "add", host.netns)
            hosts[name] = host
            _ip("-n", host.netns, "link", "set", "lo", "up")
        first = hosts[names[0]]
        _ip("-n", first.netns, "link", "add", "br0", "type", "bridge")
        _ip("-n", first.netns, "addr", "add", f"{first.address}/24", "dev", "br0")
        _ip("-n", first.netns, "link", "set", "br0", "up")
        for name in names[1:]:
            host = hosts[name]
            host.link = f"af{tag}{name}"
            # The pair is made in the host's namespace (eth0 there) and its other end moved into a's.
            _ip("-n", host.netns, "link", "add", "eth0", "type", "veth", "peer", "name", host.link)
            _ip("-n", host.netns, "link", "set", host.link, "netns", first.netns)
            _ip("-n", first.netns, "link", "set", host.link, "master", "br0", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
        observer = f"{subnet}.254"
        _ip("link", "add", root_link, "type", "veth", "peer", "name", f"{root_link}a")
        _ip("link", "set", f"{root_link}a", "netns", first.netns)
        _ip("-n", first.netns, "link", "set", f"{root_link}a", "master", "br0", "up")
        _ip("addr", "add", f"{observer}/24", "dev", root_link)
        _ip("link", "set", root_link, "up")
        yield Network(hosts, observer, root_link)
    finally:
        for host in reversed(list(hosts.values())):
            host.kill_all()
        for host in hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", root_link], capture_output=True)


class HostPostgres(PostgresCluster):
    """A throw-away PostgreSQL cluster on a host: it listens on the host's address, and any host of the
    subnet may connect without a password (as the loopback fixture's does)."""

    def __init__(self, bin_dir: Path, host: Host, port: int = 5432) -> None:
        super().__init__(bin_dir)
        self.host = host
        self.as_user = ["ip", "netns", "exec", host.netns, *self.as_user]
        self.port = port
        self.uri = f"postgresql+psycopg://aiflow@{host.address}:{port}"
        subnet = host.address.rsplit(".", 1)[0] + ".0/24"
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {subnet} trust\n")

    def start(self) -> None:
        self._ctl("-w", "-l", str(self.base / "log"), "-o",
                  f"-p {self.port} -k {self.base} -c listen_addresses={self.host.address} -c fsync=off", "start")
