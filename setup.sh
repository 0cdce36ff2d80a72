#!/usr/bin/env bash
# Install everything vnet needs on a Debian/Ubuntu host, then run the demo or the tests.
#   sudo ./setup.sh demo    install, then build three simulated hosts and show vnets working
#   sudo ./setup.sh test    install, then run the whole test suite
#   sudo ./setup.sh bench   install, then run the throughput/latency benchmark
#   sudo ./setup.sh debug-kernel  install, then build the module tests' debug kernel (slow)
#   sudo ./setup.sh install install only
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: ping for the tests and demo, iperf3 for the benchmark, iproute2 for
# humans inspecting the result (the product itself talks netlink through pyroute2).
# The kernel module is built against linux-headers-amd64 (with make) and tested in a
# QEMU guest booting Debian's stock kernel (tests/kernel/guest.py), since the host
# kernel may not load modules: qemu-system-x86, busybox-static, cpio and kmod build
# and run that guest.  man-db (with groff) renders the manual pages in doc/man, which the
# tests check for warnings.  tests/netns/test_install.py installs the wheel into fresh
# virtual environments: Debian's own python3 has no venv/ensurepip without python3-venv.
# systemd (systemd-analyze) checks the units in systemd/, and systemd-container
# (systemd-nspawn) runs them under a real systemd in the tests; dkms builds the module
# the way kmod/dkms.conf says, in the tests.  dwarves (pahole) makes the BTF of the
# module built for bookworm-backports' 6.12 in tests/kernel/test_kbuild.py; the other
# kernels it builds for (declared in lab/kbuild.py: Debian 13's 6.12, unstable's newest)
# bring their own compiler and pahole in a root unpacked into the guest cache.
# lldpd is the real LLDP speaker at the far end of a vnet port in the lab-link tests.
# libpcap0.8 compiles `vn capture`'s filters (doc/capture.md); tshark (with mergecap and
# capinfos) reads its files in the tests.
# bird2 is the routing daemon (OSPF) in every node of the leaf-spine lab that
# tests/netns/test_topo.py builds with `vn topo apply`; graphviz's dot draws `vn topo
# graph --format svg|png` and checks that its dot text parses.
# clang and libbpf-dev compile vnetd's fast path (bpf/, doc/fastpath.md) to the BPF
# object vnetd loads with libbpf1 at run time; make runs bpf/Makefile.
APT_PACKAGES=(iputils-ping iperf3 iproute2 clang libbpf-dev libbpf1
              qemu-system-x86 linux-headers-amd64 make busybox-static cpio kmod man-db
              systemd systemd-container dkms dwarves lldpd libpcap0.8 tshark bird2 graphviz)
# The debug kernel (lab/debug_kernel.py: Debian's 6.1 source with KASAN, lockdep,
# kmemleak...) is built from source, only on request: a compiler and kbuild's tools.
[ "${1:-}" = debug-kernel ] && APT_PACKAGES+=(gcc flex bison bc libelf-dev libssl-dev xz-utils)
PYTHON=${PYTHON:-python3}
"$PYTHON" -c "import ensurepip, venv" 2>/dev/null || APT_PACKAGES+=(python3-venv)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: must run as root (vnet creates namespaces, bridges and tap devices)" >&2
    exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # tshark's package asks whether non-root users may capture: no.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Python that pip must not install into (Debian's and Ubuntu's own, PEP 668) or that
# has no pip gets a virtual environment of this clone's own, .venv, used from here on.
externally_managed='import os, sys, sysconfig
sys.exit(sys.prefix == sys.base_prefix
         and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
if ! "$PYTHON" -m pip --version >/dev/null 2>&1 || ! "$PYTHON" -c "$externally_managed"; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    PYTHON=.venv/bin/python
fi

# The fast path's BPF object, into the package (vnet/datapath/fastpath/), before pip
# installs it: vnetd without it runs without a fast path and says so.
make -s -C bpf
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -vi "running pip as the 'root' user" || true
"$PYTHON" -c "import vnet, sxp, pyroute2, construct, click, cryptography" || { echo "setup.sh: install failed" >&2; exit 1; }

case "${1:-install}" in
    demo)    exec "$PYTHON" -m lab.demo ;;
    test)    exec "$PYTHON" -m pytest -q -p no:cacheprovider tests ;;
    bench)   exec "$PYTHON" -m bench.bench_throughput ;;
    debug-kernel) exec "$PYTHON" -m lab.debug_kernel ;;
    install) echo "vnet installed: vn, vnetd, network-vnet, xm and vnet-demo in $(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")" ;;
    *) echo "usage: setup.sh [install|demo|test|bench|debug-kernel]" >&2; exit 2 ;;
esac
