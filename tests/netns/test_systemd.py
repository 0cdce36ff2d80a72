"""The units of systemd/ under a real systemd, with their whole sandbox in force.

The host running the tests need not run systemd: `systemd-nspawn` boots this host's own
file system in a container, read-only under a tmpfs overlay (nothing the boot writes
reaches the disk), inside a lab host's network namespace, from a private mount
namespace.  The units are installed in the overlay unchanged, with console scripts
written as pip writes them (running this tree's code).  What is checked is what a user
relies on: `systemctl start vnetd` returns only once the persisted vnets are back
(Type=notify), the sandbox lets vnetd do all its work (taps, bridges, raw sockets, key
files, IPv6 off on its taps) and nothing more (capabilities), and stopping removes its
devices; network-vnet.service does the same through its own vnetd.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT, needs_root

from lab.lab import Host, Lab
from vnet.model import keys
from vnet.model.config import VnetConfig
from vnet.model.state import StateStore
from vnet.model.vnetid import VnetId

SYSTEMD = Path("/lib/systemd/systemd")
NSPAWN = shutil.which("systemd-nspawn")

pytestmark = [
    needs_root, pytest.mark.root,
    pytest.mark.skipif(NSPAWN is None or not SYSTEMD.exists(),
                       reason="needs systemd and systemd-nspawn (Debian: systemd, systemd-container)"),
]

#: Where this tree is seen inside the container (outside /home and /root, which the
#: units hide).
SRC = "/opt/vnet-src"
PYTHON_PREFIX = "/opt/vnet-python"
#: What the units hide from the service (ProtectHome=).
HIDDEN = ("/home", "/root", "/run/user")
BOOT_TIMEOUT = 300.0
#: systemd's own PATH for services, which finds the console scripts install() writes.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON, CAP_BPF = 12, 13, 38, 39


def hidden(path: str) -> bool:
    return any(path == h or path.startswith(h + "/") for h in HIDDEN)


def interpreter() -> tuple[str, list[str], list[str]]:
    """The interpreter line of the installed scripts, the nspawn options that make the
    interpreter visible to a service with ProtectHome= (pyenv keeps Python under /root),
    and where its packages are seen from there.  Moved, pyenv's Python needs its
    libpython found by path: its RUNPATH names the hidden directory."""
    if not hidden(sys.prefix):
        return sys.executable, [], []
    if sys.prefix != sys.base_prefix:
        pytest.skip(f"a virtual environment under {sys.prefix} is hidden from the services (ProtectHome)")
    inside = [PYTHON_PREFIX + p[len(sys.prefix):] for p in site.getsitepackages() if p.startswith(sys.prefix)]
    line = f"/usr/bin/env -S LD_LIBRARY_PATH={PYTHON_PREFIX}/lib {PYTHON_PREFIX}{sys.executable[len(sys.prefix):]}"
    return line, [f"--bind-ro={sys.prefix}:{PYTHON_PREFIX}"], inside


def install(root: Path, python: str, path: list[str]) -> None:
    """Into `root` (the overlay's upper layer): the units and the console scripts, as
    pip would write them, running the code of this tree; `path` is where their
    packages are, also for the Python programs they start (network-vnet's vnetd)."""
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in (ROOT / "systemd").glob("*.service"):
        shutil.copy(unit, units / unit.name)
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True)
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name, target in scripts.items():
        module, func = target.split(":")
        script = bindir / name
        script.write_text(f"#!{python}\nimport os\nimport sys\nsys.path[:0] = {path!r}\n"
                          f"os.environ['PYTHONPATH'] = {os.pathsep.join(path)!r}\n"
                          f"from {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)


def persist(root: Path) -> None:
    """The state vnetd restores: plain vnet 97, secure vnet 96 with its key file (root's,
    mode 0600, read without CAP_DAC_OVERRIDE), and a peer."""
    sdir = root / "var/lib/vnet"
    keys.write_key(keys.default_path(sdir, VnetId.parse("96")), 1)
    with StateStore(sdir).transaction() as st:
        st.add_vnet(VnetConfig.from_cli("97"))
        st.add_vnet(VnetConfig.from_cli("96", security="auth", key_files=("/var/lib/vnet/keys/96.key",)))
        st.add_peer("10.0.0.9")


def offer_module(root: Path) -> None:
    """A vnet.ko where network-vnet looks for an installed one, so that `start` calls
    finit_module(2) for real under the unit's system call filter.  The container holds
    no CAP_SYS_MODULE, so the kernel refuses (EPERM) before it reads the file, and
    network-vnet falls back to vnetd as on any host that cannot load the module."""
    modules = root / "usr/lib/modules" / os.uname().release
    (modules / "updates").mkdir(parents=True)
    (modules / "updates/vnet.ko").write_bytes(b"never read: the capability check comes first\n")
    (modules / "modules.dep").write_text("updates/vnet.ko:\n")


def cgroup_dirs() -> list[Path]:
    """This process's cgroup in each hierarchy nspawn uses: the unified one and, on a
    hybrid host, name=systemd."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own["cgroup2" if controllers == "" else controllers] = path
    dirs = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        mount_root, mount_point, fstype, options = fields[3], fields[4], fields[sep + 1], fields[sep + 3]
        key = "cgroup2" if fstype == "cgroup2" else "name=systemd" if "name=systemd" in options.split(",") else None
        if key in own:
            dirs.append(Path(mount_point) / os.path.relpath(own.pop(key), mount_root))
    return dirs


class Container:
    """systemd booted by systemd-nspawn in a lab host's network namespace, in cgroups
    of its own (removed afterwards), with its commands run by nsenter."""

    def __init__(self, lab: Lab, host: Host, tmp: Path) -> None:
        self.lab, self.host, self.tmp = lab, host, tmp
        self.name = f"vnet-test-{os.getpid()}"
        self.upper = tmp / "upper"
        self.log = tmp / "nspawn.log"
        self.cgroups = [d / self.name for d in cgroup_dirs()]
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def __enter__(self) -> Container:
        python, binds, packages = interpreter()
        install(self.upper, python, [SRC, *packages])
        persist(self.upper)
        offer_module(self.upper)
        try:
            self._boot(binds)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _boot(self, binds: list[str]) -> None:
        merged = self.tmp / "root"
        merged.mkdir()
        for d in self.cgroups:
            d.mkdir()
        # Every mount is made in a private mount namespace, so none outlives the test.
        # There /run is a tmpfs: it holds the overlay's upper layer (a copy of ours:
        # an overlay cannot have its upper layer inside its lower one) and nspawn's
        # own state, which on a host whose /run is on disk it would leave behind.
        # The container has the lab host's network namespace and may change it
        # (CAP_NET_ADMIN); systemd runs on the unified cgroup hierarchy, as on Debian 12.
        nspawn = [NSPAWN, "--quiet", f"--directory={merged}", f"--machine={self.name}", "--register=no",
                  "--keep-unit", "--link-journal=no", "--network-namespace-path=/proc/self/ns/net",
                  "--capability=CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON", f"--bind-ro={ROOT}:{SRC}", *binds, "--console=pipe",
                  "--boot", "--", "systemd.unit=basic.target"]
        script = ("set -e; mount -n -t tmpfs -o mode=755 tmpfs /run; mkdir -p /run/vnet-test/work; "
                  f"cp -a {shlex.quote(str(self.upper))} /run/vnet-test/upper; "
                  "mount -n -t overlay overlay -o lowerdir=/,upperdir=/run/vnet-test/upper,"
                  f"workdir=/run/vnet-test/work {shlex.quote(str(merged))}; exec {shlex.join(nspawn)}")
        procs = [str(d / "cgroup.procs") for d in self.cgroups]

        def join_cgroups() -> None:
            for p in procs:
                with open(p, "w") as f:
                    f.write("0")

        with open(self.log, "wb") as log:
            self.proc = self.lab.popen(self.host, ["unshare", "--mount", "--propagation", "private",
                                                   "sh", "-c", script],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
                                       preexec_fn=join_cgroups)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not self.pid:
            self.pid = self._init_pid()
            if self.proc.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited ({self.proc.returncode}): {self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no container init within {BOOT_TIMEOUT:g} s: {self.log.read_text()}")
            time.sleep(0.1)
        while True:  # until systemd answers, then until it has booted
            r = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=BOOT_TIMEOUT)
            if r.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"container boot: {r.stdout}{r.stderr}\n{self.journal()}")
            time.sleep(0.1)

    def _init_pid(self) -> int:
        """The container's systemd: nspawn's child running it."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            try:
                if Path(f"/proc/{pid}/exe").resolve() == SYSTEMD.resolve():
                    return int(pid)
            except OSError:
                continue
        return 0

    def run(self, *argv: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
        # The container's own environment: the host's PATH would find the host's
        # console scripts (pyenv's, say), whose code may live where the container has
        # its own /tmp.
        r = subprocess.run(["nsenter", f"--target={self.pid}", "--all", "--", "env", "-i",
                            f"PATH={CONTAINER_PATH}", "LANG=C.UTF-8", *argv],
                           capture_output=True, text=True, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in the container failed ({r.returncode}):\n"
                                 f"{r.stdout}{r.stderr}\n{self.journal()}")
        return r

    def journal(self, unit: str | None = None) -> str:
        args = ["-u", unit] if unit else ["-n", "80"]
        return self.run("journalctl", "--no-pager", "-o", "cat", *args, check=False).stdout

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "--value", "-p", prop, unit).stdout.strip()

    def __exit__(self, *exc) -> None:
        """Power off (nspawn turns SIGTERM into a clean shutdown), then remove the cgroups."""
        try:
            if self.proc is not None:
                self.proc.terminate()
                try:
                    self.proc.wait(BOOT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for d in self.cgroups:
                for sub, _, _ in sorted(os.walk(d), reverse=True) if d.exists() else []:
                    os.rmdir(sub)


@pytest.fixture
def container(lab: Lab, tmp_path: Path):
    """A booted container on lab host h1 (10.0.0.1) where new devices keep IPv6 on, so
    that turning it off on vnetd's taps is vnetd's doing."""
    host = lab.host("h1", lab.switch("sw"), "10.0.0.1/24")
    lab.sysctl(host, {"net.ipv6.conf.default.disable_ipv6": "0"})
    with Container(lab, host, tmp_path) as c:
        yield c


def links(c: Container) -> dict[str, str]:
    """Interface name -> its line of `ip -o link` in the container."""
    out = c.run("ip", "-o", "link", "show").stdout
    return {m.group(1): line for line in out.splitlines() if (m := re.match(r"\d+: ([^:@]+)", line))}


def check_vnets_up(c: Container, unit: str) -> None:
    """Both persisted vnets' taps on their bridges, IPv6 off on the taps."""
    found = links(c)
    for n in ("96", "97"):
        assert f"vnet{n}" in found and f"master vnet{n}" in found.get(f"vnif{n}", ""), \
            f"{found}\n{c.journal(unit)}"
        assert c.run("cat", f"/proc/sys/net/ipv6/conf/vnif{n}/disable_ipv6").stdout.strip() == "1"


def test_vnetd_service_is_started_once_its_vnets_are_back(container: Container) -> None:
    c = container
    c.run("systemctl", "start", "vnetd.service")  # returns when vnetd says READY=1
    check_vnets_up(c, "vnetd.service")
    assert c.show("vnetd.service", "StatusText") == "2 vnets, 1 peers; serving on /var/lib/vnet/vnetd.sock"
    status = c.run("cat", f"/proc/{c.show('vnetd.service', 'MainPID')}/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines())
    assert int(fields["CapBnd"], 16) == int(fields["CapEff"], 16) == (
        (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_BPF) | (1 << CAP_PERFMON))
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    assert len(json.loads(c.run("vn", "vnets", "--json").stdout)) == 2
    said = [line for line in c.journal("vnetd.service").splitlines() if line.startswith("vnetd: ")]
    # No error; one line on the fast path (doc/fastpath.md).  The unit grants what it
    # needs (CAP_BPF, CAP_PERFMON, bpf(2): checked above and by systemd-analyze), but
    # systemd-nspawn's own seccomp filter refuses bpf(2) to a container without
    # CAP_SYS_ADMIN (systemd 252), so here vnetd falls back and says why.
    assert len(said) == 2 and said[0].startswith(("vnetd: fast path on:", "vnetd: fast path off,")), said
    assert said[1].startswith("vnetd: serving on"), said

    c.run("systemctl", "stop", "vnetd.service")
    assert c.show("vnetd.service", "Result") == "success"
    found = links(c)
    assert not {"vnif96", "vnif97", "vnet96", "vnet97"} & set(found), found


def test_network_vnet_service_falls_back_to_its_own_vnetd(container: Container) -> None:
    c = container
    c.run("systemctl", "start", "network-vnet.service")  # no module in a container: vnetd
    check_vnets_up(c, "network-vnet.service")
    log = c.journal("network-vnet.service")
    assert "cannot load the vnet module (loading a module needs root (CAP_SYS_MODULE)" in log, log
    assert "starting vnetd" in log and "restored 2 of 2 vnets and 1 of 1 peers" in log, log
    c.run("systemctl", "stop", "network-vnet.service")
    assert c.show("network-vnet.service", "Result") == "success"
    found = links(c)
    assert not {"vnif96", "vnif97", "vnet96", "vnet97"} & set(found), found
