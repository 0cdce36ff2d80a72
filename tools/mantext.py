"""The hand-written parts of vnet's manual pages, as Markdown (see tools/mdroff.py).

What a page says about options and commands is generated from the click commands
(tools/manpage.py), so it is exactly what `--help` says.  What is written here is what
`--help` has no room for: the description, environment, files, examples and
cross-references.  `@include FILE#Title` stands for a section of doc/FILE and
`@include FILE` for the whole file, so text kept in doc/ is written only once.
`## TITLE` starts a section of the page.
"""
from __future__ import annotations

_ENVIRONMENT_VN = """\
## Environment

| Variable | Meaning |
|---|---|
| `VNET_STATE_DIR` | the state directory when `--state-dir` is not given (default `/var/lib/vnet`) |
| `VNET_SOCKET` | the vnetd control socket when `--socket` is not given (default `DIR/vnetd.sock`) |
| `VNET_DATAPATH` | the datapath when `--datapath` is not given: `auto`, `kmod` or `vnetd` (default `auto`) |
| `VNET_FORMAT` | the listings' form when neither `-br` nor `--sxp` is given: `sxp` or `brief` (default `sxp`) |
"""

_FILES = """\
## Files

| File | Meaning |
|---|---|
| `/var/lib/vnet/state.sxp` | the persisted vnets, peers and settings of this host (**vnet.sxp**(5)) |
| `/var/lib/vnet/lock` | taken by every command that changes the state file |
| `/var/lib/vnet/vnetd.sock` | vnetd's control socket (root only) |
"""

_EXIT_STATUS = """\
## Exit status

| Status | When |
|---|---|
| 0 | success |
| 1 | any failure, including errors reported by the datapath |
| 2 | a usage error; a usage line is printed first |
"""

VN = {
    "summary": "manage vnets: private virtual Ethernet LANs across hosts",
    "description": """\
A vnet is a private virtual Ethernet LAN with a 128-bit id. On every host it is a Linux
bridge (`vnet97`) with a vnet device (`vnif97`) on it; VM and container interfaces join
the vnet by being added to the bridge. Frames travel between hosts as EtherIP in UDP
(port 1798) or raw EtherIP (IP protocol 97), carried by a datapath: the user-space
daemon **vnetd**(8) or the vnet kernel module.

**vn** is the command line. It validates each request, keeps the host's state file
(**vnet.sxp**(5)) and sends commands to the datapath. Vnets and peers persist in the
state directory and come back when vnetd restarts or `vn insmod` loads the module.
Commands that talk to a datapath need root; `vn vnet-list` and `vn bridges` do not.
""",
    "after": f"""\
## Datapath selection

@include commands.md#Which datapath `vn` uses

## Output

@include commands.md#Output

## Exit status

@include commands.md#Errors

{_ENVIRONMENT_VN}
{_FILES}
## Examples

Create vnet 97 from its config file, put a VM's tap device on it, and look:

```
vn vnet-create doc/examples/vnet97.sxp
ip link set dev tap-of-my-vm master vnet97
vn vnets -a
```

Create vnet 99 with raw EtherIP and default names (`vnet99`, `vnif99`), then delete it
and its bridge:

```
vn vnet-create -e etherip 99
vn vnet-delete -b 99
```

Reach hosts behind a router that does not route multicast (run the reverse there):

```
vn peer-add 192.0.2.7
```

Use the kernel module instead of vnetd:

```
vn insmod && vn vnet-create 97
```

## See also

**vnetd**(8), **network-vnet**(8), **xm-vnet**(1), **vnet.sxp**(5), **ip-link**(8),
**bridge**(8); `doc/commands.md`, `doc/kmod.md` and `doc/attach.md` in the vnet sources.
""",
}

VNETD = {
    "summary": "the user-space vnet datapath",
    "description": """\
**vnetd** carries vnets (private virtual Ethernet LANs, see **vn**(8)) between hosts
without a kernel module. It makes one tap device per vnet and attaches it to the
vnet's bridge, sends the frames read from it to the host that holds the destination
MAC (EtherIP in UDP port 1798, or raw EtherIP), floods the others to a multicast group
and to peers, and takes commands from **vn**(8) on a Unix socket in the state
directory. At start it restores the vnets, peers and multicast group persisted there.

vnetd runs in the foreground until SIGTERM or SIGINT and logs to stderr, prefixed
`vnetd: `. It needs root (or `CAP_NET_ADMIN` and `CAP_NET_RAW`), and says so in one
line when it lacks them. **network-vnet**(8) starts it in the background at boot.
""",
    "after": f"""\
## One datapath per network namespace

@include commands.md#One datapath per network namespace

## Underlay address

@include commands.md#Underlay address

## Start-up

@include commands.md#Start-up

## Shutdown

@include commands.md#Shutdown

## Control protocol

@include commands.md#Control protocol

## Command language

@include commands.md#Command language

## Environment

| Variable | Meaning |
|---|---|
| `VNET_STATE_DIR` | the state directory when `--state-dir` is not given (default `/var/lib/vnet`) |
| `VNET_SOCKET` | the control socket when `--socket` is not given (default `STATE_DIR/vnetd.sock`) |

{_FILES}
## Examples

```
vnetd &
vnetd -i eth0 -V
ip netns exec h1 vnetd --state-dir /tmp/h1 -a 10.0.0.1
```

## See also

**vn**(8), **network-vnet**(8), **vnet.sxp**(5); `doc/commands.md` and
`doc/wire-format.md` in the vnet sources.
""",
}

XM = {
    "summary": "create, delete and list vnets with the Xen xm commands",
    "description": """\
This **xm** has the three vnet commands of Xen's **xm**, for hosts that run vnet, so
that scripts and habits from Xen keep working: `xm vnet-create FILE`,
`xm vnet-delete ID` and `xm vnet-list [-l] [ID...]`. It is not Xen's xm: any other
command is refused with exit status 1, for example
`xm: 'create' is not provided here: this xm only has vnet-create, vnet-delete and vnet-list (vnet's xm-compatible commands)`.
Do not install it where Xen's own **xm** is installed.

The commands do what **vn**(8) does: they use the same state directory, datapath
selection, checks and messages (prefixed `xm:`). `xm vnet-create FILE` is
`vn vnet-create FILE`; the file is a vnet config (**vnet.sxp**(5)), such as Xen's
`examples/vnet97.sxp`. `xm vnet-list` prints one id per line, or with `-l` or ids each
configuration as xm did, without blank lines between them.

Differences from xend's commands:

* `vnet-delete` deletes the vnet from the datapath and from the state. xend's left the
  vnet and its device in place: it sent a malformed `vnet.del`.
* `vnet-delete` keeps the bridge, as `vn vnet-delete` does, so that VMs attached to it
  stay attached and a later `vnet-create` joins them again. `-b` deletes the bridge too,
  as xend always did.
* `vnet-delete` refuses, naming them, while interfaces other than the vnet's own device
  are on its bridge: xend cut them off without a word. `-f` deletes anyway and says
  which interfaces it cut off.
* Vnets are persisted in the state directory, not in xenstore, and ids are printed in
  the 39-character form.
* `vnet-list` with an id that does not exist reports it on stderr and exits with
  status 1; the other ids are still listed. xm printed the error on stdout.
""",
    "after": f"""\
{_EXIT_STATUS}
{_ENVIRONMENT_VN}
{_FILES}
## Examples

```
xm vnet-create doc/examples/vnet97.sxp
xm vnet-list
xm vnet-list -l 97
xm vnet-delete 97
```

`xm vnet-list -l 97` prints:

```
(vnet
    (id 0000:0000:0000:0000:0000:0000:0000:0097)
    (bridge vnet97)
    (vnetif vnif97)
    (security none)
    (encapsulation udp)
)
```

## See also

**vn**(8), **vnetd**(8), **vnet.sxp**(5), **xl**(1).
""",
}

NETWORK_VNET = {
    "summary": "start, stop or show a host's vnet datapath and its persisted vnets",
    "description": """\
**network-vnet** brings the host's vnet datapath up at boot and down at shutdown, in
the style of Xen's network scripts (`network-vnet start|stop|status`). Xen's
network-vnet only loaded the module; here the vnets and peers persist in the state
directory (**vnet.sxp**(5)), so:

* `start` brings up the datapath (the kernel module if it can be loaded, else
  **vnetd**(8), started in the background) and restores the persisted vnets and peers;
* `stop` takes them down and keeps them persisted, so the next `start` brings them
  back;
* `status` says what runs and which vnets and peers are in service or only persisted.

Each is idempotent: `start` on a running host changes nothing, and `stop` on a stopped
one is not an error.
""",
    "after": """\
## Services

@include commands.md#Services

## Exit status

0 on success, and for `status` if the datapath runs; 3 for `status` if it does not
(as LSB init scripts); 1 on any failure; 2 on a usage error.

## Files

| File | Meaning |
|---|---|
| `/var/lib/vnet/state.sxp` | the persisted vnets, peers and settings (**vnet.sxp**(5)) |
| `/var/lib/vnet/vnetd.pid` | the pid of the vnetd that network-vnet started (`--pidfile`) |
| `/var/lib/vnet/vnetd.log` | that vnetd's log |
| `/var/lib/vnet/vnetd.sock` | vnetd's control socket |

## See also

**vn**(8), **vnetd**(8), **vnet.sxp**(5).
""",
}

VNET_SXP = {
    "summary": "vnet config files, vnet ids, the SXP syntax and the vnet state directory",
    "synopsis": """\
`(vnet (id ID) [(bridge BRIDGE)] [(vnetif VNETIF)] [(security none|auth|conf)] [(encapsulation udp|etherip)] [(key-file SEND [OTHER])])`
""",
    "description": "@include config.md\n",
    "after": """\
## Files

| File | Meaning |
|---|---|
| `/var/lib/vnet/state.sxp` | this host's state |
| `doc/examples/vnet97.sxp`, `vnet98.sxp`, `vnet99.sxp` | example configs in the vnet sources |

## See also

**vn**(8), **xm-vnet**(1), **vnetd**(8).
""",
}
