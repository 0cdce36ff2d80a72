"""Packaging for vnet: private virtual Ethernet LANs across Linux hosts."""
from setuptools import find_packages, setup

setup(
    name="vnet",
    version="0.1.0",
    description="Cross-host private Ethernet LANs for VMs and containers (Xen vnet, modernised)",
    license="GPL-2.0-only",
    python_requires=">=3.9",
    packages=find_packages(include=["sxp", "sxp.*", "vnet", "vnet.*"]),
    install_requires=["pyroute2>=0.7", "construct>=2.10", "click>=8"],
    extras_require={"test": ["pytest>=7"]},
    # Manual pages, generated from the commands' --help by `python -m vnet.manpage`.
    data_files=[
        ("share/man/man1", ["doc/man/xm-vnet.1"]),
        ("share/man/man5", ["doc/man/vnet.sxp.5"]),
        ("share/man/man8", ["doc/man/vn.8", "doc/man/vnetd.8", "doc/man/network-vnet.8"]),
    ],
    entry_points={
        "console_scripts": [
            "vn = vnet.cli:main",
            "vnetd = vnet.vnetd:main",
            "vnet-demo = vnet.demo:main",
            "network-vnet = vnet.hook:main",
            "xm = vnet.xm:main",
        ]
    },
)
