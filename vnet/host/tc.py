"""Link control of a port on a kernel module host, with tc (doc/ports.md, "Link control").

The module's datapath has no link control of its own: the control layer gives the
port's interface
* for the impairments, a netem qdisc as its root qdisc, handle 1798: (loss, delay,
  jitter, corrupt and rate are all netem options), which acts on what the module
  sends out of the port (dev_queue_xmit goes through the root qdisc);
* for suspension, a clsact qdisc with a matchall filter at preference 1798 that drops
  every frame, on ingress (tc ingress runs before the module's rx handler, so nothing
  from the port enters the vnet) and on egress (nothing leaves).

Removing link control removes exactly that: the netem qdisc of handle 1798: (the
interface gets its default root qdisc back) and the two filters of preference 1798,
then the clsact qdisc if no filter is left on it.  A root qdisc vnet did not make
(any handle but 0:, the kernel's default, and our 1798:) belongs to another tc user:
refused with an error, never replaced.  Where the kernel lacks netem (sch_netem),
clsact, matchall or the gact action, the error names what is missing.

`run` is the way tc is called (a test passes a fake): argv in, (returncode, stdout,
stderr) out.
"""
from __future__ import annotations

import json
import subprocess
from typing import Callable

from vnet.errors import DatapathError
from vnet.model.linkctl import LinkControl

#: The handle of our root netem qdisc and the preference of our filters: vnet's UDP port.
HANDLE = "1798:"
PREF = "1798"
Runner = Callable[[list[str]], tuple[int, str, str]]

#: The kernel pieces link control uses, by the word `_call` is told it needs.
_PIECES = {"netem": "the netem qdisc (kernel module sch_netem)",
           "clsact": "the clsact qdisc (kernel module sch_ingress)",
           "matchall": "the matchall classifier (kernel module cls_matchall)",
           "gact": "the gact action (kernel module act_gact)"}


def run_tc(argv: list[str]) -> tuple[int, str, str]:
    """Run tc for real."""
    try:
        done = subprocess.run(["tc", *argv], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise DatapathError("ENOENT", "link control on the kernel module datapath needs tc "
                            "(iproute2), which is not installed") from None
    return done.returncode, done.stdout, done.stderr


def _call(run: Runner, ifname: str, argv: list[str], need: str) -> str:
    code, out, err = run(argv)
    if code == 0:
        return out
    text = " ".join(err.split()) or f"tc exited with {code}"
    low = text.lower()
    piece = None
    if need and ("kind is unknown" in low or "unknown qdisc" in low):
        piece = need
    elif need == "matchall" and "action" in low and ("module" in low or "unknown" in low):
        piece = "gact"
    elif need == "matchall" and ("classifier not found" in low or "unknown filter" in low):
        piece = "matchall"
    if piece is not None:
        raise DatapathError(
            "EOPNOTSUPP", f"port {ifname}: link control on the kernel module datapath needs {_PIECES[piece]}, "
            f"which this kernel lacks (tc {' '.join(argv)}: {text}); load it (modprobe), or run vnetd, "
            "whose datapath does link control itself")
    raise DatapathError("EIO", f"port {ifname}: tc {' '.join(argv)} failed: {text}")


def _qdiscs(run: Runner, ifname: str) -> list[dict]:
    return json.loads(_call(run, ifname, ["-j", "qdisc", "show", "dev", ifname], "") or "[]")


def _filters(run: Runner, ifname: str, where: str) -> list[dict]:
    return json.loads(_call(run, ifname, ["-j", "filter", "show", "dev", ifname, where], "") or "[]")


def netem_args(link: LinkControl) -> list[str]:
    """netem's options for the impairments of `link`."""
    args: list[str] = []
    if link.delay or link.jitter:
        args += ["delay", f"{link.delay:g}ms"] + ([f"{link.jitter:g}ms"] if link.jitter else [])
    if link.loss:
        args += ["loss", f"{link.loss:g}%"]
    if link.corrupt:
        args += ["corrupt", f"{link.corrupt:g}%"]
    if link.rate:
        args += ["rate", f"{link.rate}bit"]
    return args


def apply(ifname: str, link: LinkControl, run: Runner = run_tc) -> None:
    """Make the interface's tc state what `link` asks, touching only what vnet makes;
    raises DatapathError (naming what is missing, or whose qdisc is in the way), and
    then takes back what this call added."""
    qdiscs = _qdiscs(run, ifname)
    root = next((q for q in qdiscs if q.get("root")), None)
    ours = root is not None and root.get("handle") == HANDLE and root.get("kind") == "netem"
    if link.impaired and root is not None and not ours and root.get("handle", "0:") != "0:":
        raise DatapathError(
            "EBUSY", f"port {ifname}: its root qdisc {root.get('kind')} {root.get('handle')} was not made "
            f"by vnet; remove it (tc qdisc del dev {ifname} root) to give the port link control")
    was_suspended = _suspended(run, ifname, qdiscs)
    try:
        if link.impaired:
            _call(run, ifname, ["qdisc", "replace", "dev", ifname, "root", "handle", HANDLE, "netem",
                                *netem_args(link)], "netem")
        elif ours:
            _call(run, ifname, ["qdisc", "del", "dev", ifname, "root", "handle", HANDLE], "")
        if link.suspended != was_suspended:
            _suspend(run, ifname, link.suspended)
    except DatapathError:
        try:  # take back what was added here; a change of what was there stays
            if link.impaired and not ours:
                run(["qdisc", "del", "dev", ifname, "root", "handle", HANDLE])
            if link.suspended and not was_suspended:
                _suspend(run, ifname, False)
        except DatapathError:
            pass
        raise


def _suspended(run: Runner, ifname: str, qdiscs: list[dict]) -> bool:
    """True if our drop filters are on the interface."""
    if not any(q.get("kind") == "clsact" for q in qdiscs):
        return False
    return any(str(f.get("pref")) == PREF for f in _filters(run, ifname, "ingress"))


def _suspend(run: Runner, ifname: str, suspended: bool) -> None:
    clsact = any(q.get("kind") == "clsact" for q in _qdiscs(run, ifname))
    if suspended:
        if not clsact:
            _call(run, ifname, ["qdisc", "add", "dev", ifname, "clsact"], "clsact")
        for where in ("ingress", "egress"):
            if not any(str(f.get("pref")) == PREF for f in _filters(run, ifname, where)):
                _call(run, ifname, ["filter", "add", "dev", ifname, where, "pref", PREF, "matchall",
                                    "action", "drop"], "matchall")
        return
    if not clsact:
        return
    for where in ("ingress", "egress"):
        if any(str(f.get("pref")) == PREF for f in _filters(run, ifname, where)):
            _call(run, ifname, ["filter", "del", "dev", ifname, where, "pref", PREF], "")
    if not _filters(run, ifname, "ingress") and not _filters(run, ifname, "egress"):
        _call(run, ifname, ["qdisc", "del", "dev", ifname, "clsact"], "")


def remove(ifname: str, run: Runner = run_tc) -> None:
    """Take vnet's link control off the interface (port-del, vnet-del): best effort, as
    the interface may be gone already."""
    try:
        apply(ifname, LinkControl(), run)
    except (DatapathError, ValueError):
        pass
