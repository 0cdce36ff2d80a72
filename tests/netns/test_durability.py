"""Durability: a host that loses power in the middle of `vn` changes comes back with
every change either fully there or fully absent, and its state always loads.

A random mix of changes (vnet-create/delete, peer-add/delete, port-add/del,
endpoint-add/del, key-gen, key-add/use/del) runs on one host, one `vn` after another,
and at random moments every process of the host's namespace is killed with SIGKILL:
vnetd in the middle of a change, the `vn` command between the datapath and the
state write.  Then the host restarts (vnetd start; the module reloaded and the state
restored), and both the persisted state and what the datapath lists must be the
model of the acknowledged changes, plus, or minus, the one that was in flight.

vifs are soft state (announced again by the VMs, never persisted), so they are not
in the mix.  doc/config.md ("Locking and atomic writes") says what makes this hold.
"""
from __future__ import annotations

import copy
import os
import random
import select
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import long_run, needs_root

from lab.clean import kill_pids, pids_in_namespaces
from lab.netns import enter_ns
from lab.procs import run_as_main
from lab.vnethost import VnetHost
from vnet.cli.vn import vn as vn_command
from vnet.model import keys
from vnet.model.state import StateStore
from vnet.model.vnetid import VnetId

pytestmark = [needs_root, pytest.mark.root]

IDS = [f"{n:x}" for n in range(0x90, 0x98)]
PEERS = [f"10.0.0.{n}" for n in range(100, 116)]
PORT_NAMES = [f"dport{n}" for n in range(8)]
ENDPOINT_PORTS = list(range(7000, 7008))

Model = dict  # {"vnets": {short id: {...}}, "peers": {addr: port}, "keyfiles": {path: id}}


def _long(short: str) -> str:
    return str(VnetId.parse(short))


class Changes:
    """The random changes, as `vn` argv, each with what it does to the model."""

    def __init__(self, rng: random.Random, state_dir: Path) -> None:
        self.rng = rng
        self.state_dir = state_dir
        self.extra = state_dir.parent / f"{state_dir.name}-keys"
        self.made = 0
        self.picked: Counter[str] = Counter()

    def default_key(self, short: str) -> str:
        return str(keys.default_path(self.state_dir, VnetId.parse(short)))

    def pick(self, m: Model) -> tuple[list[str], Callable[[Model], None]]:
        """One change that the model says must succeed: (argv, apply)."""
        argv, apply = self._pick(m)
        self.picked[argv[0]] += 1
        return argv, apply

    def _pick(self, m: Model) -> tuple[list[str], Callable[[Model], None]]:
        rng, vnets = self.rng, m["vnets"]
        used_ports = {p for v in vnets.values() for p in v["ports"]}
        used_eps = {e for v in vnets.values() for e in v["endpoints"]}
        secure = [i for i, v in vnets.items() if v["security"] != "none"]
        choices: list[tuple[str, Callable]] = []
        free_ids = [i for i in IDS if i not in vnets]
        if free_ids:
            choices.append(("vnet-create", lambda: self._create(rng.choice(free_ids), used_ports)))
        if vnets:
            choices.append(("vnet-delete", lambda: self._delete(rng.choice(sorted(vnets)))))
            free = [p for p in PORT_NAMES if p not in used_ports]
            if free:
                choices.append(("port-add", lambda: self._port_add(rng.choice(sorted(vnets)), rng.choice(free))))
            eps = [f"udp 127.0.0.1:{p} 127.0.0.1:{p + 1000}" for p in ENDPOINT_PORTS]
            eps = [e for e in eps if e not in used_eps]
            if eps:
                choices.append(("endpoint-add", lambda: self._endpoint_add(rng.choice(sorted(vnets)), rng.choice(eps))))
        with_ports = [i for i, v in vnets.items() if v["ports"]]
        if with_ports:
            choices.append(("port-del", lambda: self._port_del(m, rng.choice(sorted(with_ports)))))
        with_eps = [i for i, v in vnets.items() if v["endpoints"]]
        if with_eps:
            choices.append(("endpoint-del", lambda: self._endpoint_del(m, rng.choice(sorted(with_eps)))))
        choices.append(("peer-add", lambda: self._peer_add(rng.choice(PEERS), rng.choice([1798, 1799]))))
        if m["peers"]:
            choices.append(("peer-delete", lambda: self._peer_del(rng.choice(sorted(m["peers"])))))
        choices.append(("key-gen", self._key_gen))
        one_key = [i for i in secure if len(vnets[i]["keys"]) == 1]
        if one_key:
            vid = rng.choice(sorted(one_key))
            held = m["keyfiles"][vnets[vid]["keys"][0]]
            files = sorted(f for f, kid in m["keyfiles"].items() if kid != held)
            if files:
                choices.append(("key-add", lambda: self._key_add(vid, rng.choice(files), rng.random() < 0.3)))
        two_keys = sorted(i for i in secure if len(vnets[i]["keys"]) == 2)
        if two_keys:
            choices.append(("key-use", lambda: self._key_use(m, rng.choice(two_keys))))
            choices.append(("key-del", lambda: self._key_del(m, rng.choice(two_keys))))
        # Kinds picked less often so far weigh more, so that even a short run has a mix.
        kinds, makers = zip(*choices)
        return rng.choices(makers, [1 / (1 + self.picked[k]) for k in kinds])[0]()

    def _create(self, vid: str, used_ports: set[str]):
        security = self.rng.choice(["none", "none", "auth", "conf"])
        argv = ["vnet-create", vid, "-s", security]
        ports = []
        free = [p for p in PORT_NAMES if p not in used_ports]
        if free and self.rng.random() < 0.3:
            ports = [self.rng.choice(free)]
            argv += ["-p", ports[0]]
        key = [self.default_key(vid)] if security != "none" else []

        def apply(m: Model) -> None:
            m["vnets"][vid] = {"security": security, "keys": list(key), "ports": list(ports), "endpoints": []}
        return argv, apply

    def _delete(self, vid: str):
        return ["vnet-delete", vid], lambda m: m["vnets"].pop(vid)

    def _port_add(self, vid: str, name: str):
        return ["port-add", vid, name], lambda m: m["vnets"][vid]["ports"].append(name)

    def _port_del(self, m: Model, vid: str):
        name = self.rng.choice(m["vnets"][vid]["ports"])
        return ["port-del", vid, name], lambda m: m["vnets"][vid]["ports"].remove(name)

    def _endpoint_add(self, vid: str, spec: str):
        return ["endpoint-add", vid, *spec.split()], lambda m: m["vnets"][vid]["endpoints"].append(spec)

    def _endpoint_del(self, m: Model, vid: str):
        spec = self.rng.choice(m["vnets"][vid]["endpoints"])
        return ["endpoint-del", vid, *spec.split()], lambda m: m["vnets"][vid]["endpoints"].remove(spec)

    def _peer_add(self, addr: str, port: int):
        return ["peer-add", addr, "--port", str(port)], lambda m: m["peers"].__setitem__(addr, port)

    def _peer_del(self, addr: str):
        return ["peer-delete", addr], lambda m: m["peers"].pop(addr)

    def _key_gen(self):
        self.made += 1
        path, kid = str(self.extra / f"k{self.made}.key"), self.rng.randrange(2, 10)
        return ["key-gen", "--id", str(kid), path], lambda m: m["keyfiles"].__setitem__(path, kid)

    def _key_add(self, vid: str, path: str, send: bool):
        def apply(m: Model) -> None:
            held = m["vnets"][vid]["keys"]
            held[:] = [path] + held if send else held + [path]
        return ["key-add", vid, path] + (["--send"] if send else []), apply

    def _key_use(self, m: Model, vid: str):
        second = m["vnets"][vid]["keys"][1]

        def apply(m: Model) -> None:
            m["vnets"][vid]["keys"].reverse()
        return ["key-use", vid, str(m["keyfiles"][second])], apply

    def _key_del(self, m: Model, vid: str):
        second = m["vnets"][vid]["keys"][1]
        return ["key-del", vid, str(m["keyfiles"][second])], lambda m: m["vnets"][vid]["keys"].pop()


def _drive(ns: str, datapath: str, state_dir: Path, log: Path, argvs: list[list[str]], wfd: int) -> None:
    """The forked driver, inside the host's namespace: each change a `vn` process of its
    own (forked, with everything imported), one after another.  "b I" before change I
    starts and "d I STATUS" once it exited say what was begun and what acknowledged."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        enter_ns(ns)
        os.environ["VNET_DATAPATH"] = datapath
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for i, argv in enumerate(argvs):
            os.write(out, f"=== {i}: vn {' '.join(argv)}\n".encode())
            os.write(wfd, f"b {i}\n".encode())
            pid = os.fork()
            if pid == 0:
                os.dup2(out, 1)
                os.dup2(out, 2)
                code = run_as_main(vn_command.main, ["--state-dir", str(state_dir), *argv], "vn")
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            os.write(wfd, f"d {i} {code}\n".encode())
    except BaseException:
        traceback.print_exc()
    os._exit(0)


def _power_loss(ns: str) -> None:
    """Every process of the namespace gone at once, as when the host loses power."""
    while pids := pids_in_namespaces([ns]):
        kill_pids(pids, grace=0, first=signal.SIGKILL)


def _run_until_power_loss(h: VnetHost, log: Path, argvs: list[list[str]], kill_after: int,
                          rng: random.Random) -> tuple[set[int], int | None]:
    """Run `argvs`; when change `kill_after` has begun, wait a random part of how long
    a change took so far and cut the power.  Returns the acknowledged changes and the
    one in flight (begun, not acknowledged), if any."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _drive(h.host.ns, h.datapath, h.state_dir, log, argvs, wfd)
    os.close(wfd)
    begun: dict[int, float] = {}
    acked: set[int] = set()
    took: list[float] = []
    buf = b""
    deadline = time.monotonic() + 60 + 30 * len(argvs)
    try:
        while True:
            if not select.select([rfd], [], [], 1.0)[0]:
                assert time.monotonic() < deadline, f"the changes stalled: {log.read_text()[-2000:]}"
                continue
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                kind, i, *rest = line.decode().split()
                if kind == "b":
                    begun[int(i)] = time.monotonic()
                    if int(i) == kill_after:
                        time.sleep(rng.uniform(0, sorted(took)[len(took) // 2] if took else 0.05))
                        _power_loss(h.host.ns)
                else:
                    assert rest == ["0"], f"vn {' '.join(argvs[int(i)])} failed: {log.read_text()[-2000:]}"
                    acked.add(int(i))
                    took.append(time.monotonic() - begun[int(i)])
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    in_flight = [i for i in begun if i not in acked]
    assert len(in_flight) <= 1 and acked == set(range(len(acked))), (begun, acked)
    return acked, in_flight[0] if in_flight else None


def _persisted(state_dir: Path, m: Model) -> Model:
    """The model as the state directory has it (loading it must work), with the key
    files of the model that exist and load."""
    state = StateStore(state_dir).load()
    vnets = {}
    for vid, cfg in state.vnets.items():
        vnets[vid.short] = {"security": cfg.security, "keys": list(cfg.key_files), "ports": list(cfg.ports),
                            "endpoints": [str(e) for e in cfg.endpoints]}
    keyfiles = {}
    for path in m["keyfiles"]:
        if os.path.lexists(path):
            keyfiles[path] = keys.load_key(path).id  # a key file is whole or absent
    return {"vnets": vnets, "peers": dict(state.peers), "keyfiles": keyfiles}


def _listed(h: VnetHost) -> dict:
    """What the datapath runs, from its listings."""
    vnets = {v["id"]: (v["security"], v["keys"]) for v in h.vn_json("vnets")}
    return {"vnets": vnets,
            "peers": {p["addr"]: p["port"] for p in h.vn_json("peers")},
            "ports": sorted((p["vnet"], p["ifname"]) for p in h.vn_json("ports")),
            "endpoints": sorted((e["vnet"], " ".join(w for w in (e["kind"], e["local"], e["remote"]) if w != "-"))
                                for e in h.vn_json("endpoints"))}


def _expected_listing(m: Model) -> dict:
    vs = m["vnets"]
    return {"vnets": {_long(i): (v["security"], [m["keyfiles"][k] for k in v["keys"]]) for i, v in vs.items()},
            "peers": dict(m["peers"]),
            "ports": sorted((_long(i), p) for i, v in vs.items() for p in v["ports"]),
            "endpoints": sorted((_long(i), e) for i, v in vs.items() for e in v["endpoints"])}


def _normal(m: Model) -> Model:
    """Ports and endpoints as sets: their order is not what a change is about."""
    out = copy.deepcopy(m)
    for v in out["vnets"].values():
        v["ports"].sort()
        v["endpoints"].sort()
    return out


def _restart_vnetd(h: VnetHost) -> None:
    if h.proc is not None:
        h.proc.wait(30)  # killed with the namespace: reap it
    h.start()


def power_loss_scenario(h: VnetHost, log: Path, changes: int, losses: int, restart: Callable[[VnetHost], None],
                        seed: int) -> dict:
    """`changes` random changes on `h` with about `losses` power losses among them; after
    each restart the state loads and the state and the datapath are the model of the
    acknowledged changes, with or without the one in flight.  Returns counts."""
    rng = random.Random(seed)
    gen = Changes(rng, h.state_dir)
    m: Model = {"vnets": {}, "peers": {}, "keyfiles": {}}
    for short in IDS:  # the default keys exist before the changes start
        path = gen.default_key(short)
        keys.write_key(path, 1)
        m["keyfiles"][path] = 1
    done = restarts = in_flight_kept = in_flight_lost = 0
    kinds: Counter[str] = Counter()
    per = max(1, changes // losses)
    while done < changes:
        argvs, applies, sim = [], [], copy.deepcopy(m)
        for _ in range(min(2 * per, changes - done)):
            argv, apply = gen.pick(sim)
            apply(sim)
            argvs.append(argv)
            applies.append(apply)
        acked, flying = _run_until_power_loss(h, log, argvs, rng.randrange(len(argvs)), rng)
        for i in sorted(acked):
            applies[i](m)
            kinds[argvs[i][0]] += 1
        done += len(acked)
        with_it = copy.deepcopy(m)
        if flying is not None:
            applies[flying](with_it)
            done += 1
        restart(h)
        restarts += 1
        got = _persisted(h.state_dir, with_it)
        if flying is not None and _normal(got) == _normal(with_it):
            m = with_it
            in_flight_kept += 1
            kinds[argvs[flying][0]] += 1
        else:
            assert _normal(got) == _normal(m), (
                f"after change {flying} ({argvs[flying] if flying is not None else None}) was cut, the state is "
                f"neither the model with it nor without it:\n{got}\nexpected\n{m}\nor\n{with_it}")
            in_flight_lost += flying is not None
        assert _listed(h) == _expected_listing(m), f"{h.datapath} runs something else than the state says"
    return {"changes": done, "restarts": restarts, "in_flight_kept": in_flight_kept,
            "in_flight_lost": in_flight_lost, "kinds": dict(sorted(kinds.items()))}


def test_changes_survive_power_loss(make_hosts, tmp_path):
    (h,) = make_hosts(1)
    restart = _restart_vnetd if h.datapath == "vnetd" else None
    assert restart is not None, "the module's variant is tests/kernel/in_guest/test_kmod_durability.py"
    counts = power_loss_scenario(h, tmp_path / "vn.log", changes=100, losses=10, restart=restart, seed=16)
    print(counts)
    assert counts["restarts"] >= 5 and len(counts["kinds"]) >= 8, counts


@long_run
def test_a_thousand_changes_survive_power_loss(make_hosts, tmp_path):
    (h,) = make_hosts(1, datapath="vnetd")
    counts = power_loss_scenario(h, tmp_path / "vn.log", changes=1000, losses=100, restart=_restart_vnetd,
                                 seed=int(os.environ.get("VNET_SEED", "1016")))
    print(counts)
    assert counts["restarts"] >= 5 and len(counts["kinds"]) >= 8, counts
