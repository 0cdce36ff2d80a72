"""Every file that types the generic netlink family "vnet", rendered from kmod/vnet.yaml.

The module's control API used to be typed twice, in C (the uAPI header, the policies)
and by hand in Python (command numbers, attribute types), and the counter and
drop-reason names three times (the module's enums, its name tables, vnetd's registry).
Now kmod/vnet.yaml, a netlink spec in the kernel's YAML format (genetlink-legacy), is
the one source, and this renders from it:

    kmod/uapi/vnet_genl.h         constants, enums, commands and attributes (uAPI)
    kmod/netlink_gen.h, .c        the module's policies and ops table, and the counter
                                  and drop-reason enums with their name tables
    vnet/datapath/kmod/family.py  the constants and pyroute2 message class of the client
    vnet/wire/stats.py            the counter and drop-reason names vnetd counts with

The output is committed, so a host without PyYAML still builds the module and runs
vnet; PyYAML is needed only here (the test extra), never by the installed package.

    python -m tools.genl            # after editing kmod/vnet.yaml
    python -m tools.genl --check    # say which generated files are out of date (exit 1)

The spec keeps the conventions of the kernel's own generator (ynl-gen) where they
apply; this is not ynl-gen, and renders only what the family uses: one global policy
(kernel-policy: global, for Linux 6.1's small ops), nests over subsets of one
attribute space, and the families' definitions.  Anything else is refused by name.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "kmod" / "vnet.yaml"
GENERATED = "Generated from kmod/vnet.yaml by python -m tools.genl; do not edit."

UAPI_H = "kmod/uapi/vnet_genl.h"
GEN_H = "kmod/netlink_gen.h"
GEN_C = "kmod/netlink_gen.c"
FAMILY_PY = "vnet/datapath/kmod/family.py"
STATS_PY = "vnet/wire/stats.py"

#: The module-private enums (`header` names GEN_H): registry in stats.py -> spec name.
REGISTRIES = {"COUNTERS": "counter", "DROPS": "drop"}

# Line length the C output keeps to where it has a choice (comments go above an entry
# rather than beside it past this), as kernel style prefers.
C_COLUMNS = 80


class SpecError(Exception):
    """The spec says something wrong, or something this generator does not render."""


def need(ok: object, message: str) -> None:
    if not ok:
        raise SpecError(message)


def c_upper(name: str) -> str:
    return name.upper().replace("-", "_")


def c_lower(name: str) -> str:
    return name.lower().replace("-", "_")


def one_line(doc: str | None, what: str) -> str:
    """An attribute's or entry's doc: one line, since it becomes a trailing comment."""
    doc = (doc or "").strip()
    need("\n" not in doc, f"{what}: doc must be one line (it is a trailing comment)")
    return doc


def summary(doc: str) -> str:
    """The first sentence of a doc, on one line."""
    text = " ".join(doc.split("\n\n")[0].split())
    m = re.match(r"(.+?\.)(\s|$)", text)
    return m.group(1) if m else text


# ---- the spec, read ---------------------------------------------------------------------

@dataclass
class Const:
    name: str
    c_name: str
    value: int | str
    doc: str
    header: str | None


@dataclass
class Entry:
    name: str
    c_name: str
    value: int
    doc: str


@dataclass
class Enum:
    name: str
    c_name: str
    prefix: str
    entries: list[Entry]
    doc: str
    header: str | None
    cnt_name: str | None  # render-max: the count entry, then PREFIX_MAX


@dataclass
class Attr:
    name: str
    c_name: str
    short: str  # the C name without the set's prefix: ID, IFNAME
    value: int
    type: str
    doc: str
    spec: dict


@dataclass
class AttrSet:
    name: str
    attrs: list[Attr]
    doc: str
    enum_name: str | None = None
    subset_of: str | None = None


@dataclass
class Op:
    name: str
    c_name: str
    value: int
    doc: str
    flags: list[str]
    do: dict | None
    dump: dict | None
    event: dict | None = None  # a notification the module sends on group `mcgrp`
    mcgrp: str | None = None

    def attrs(self, kind: str, part: str) -> list[str]:
        sub = self.do if kind == "do" else self.dump
        return list(((sub or {}).get(part) or {}).get("attributes") or [])

    def event_attrs(self) -> list[str]:
        return list((self.event or {}).get("attributes") or [])


@dataclass
class Family:
    name: str
    doc: str
    version: int
    c_family_name: str
    c_version_name: str
    consts: dict[str, Const] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    sets: dict[str, AttrSet] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    ops_enum: str = ""
    mcgrps: list[str] = field(default_factory=list)
    #: Flags of each multicast group (names of MCGRP_FLAGS).
    mcgrp_flags: dict[str, list[str]] = field(default_factory=dict)

    def mcgrp_define(self, group: str) -> str:
        """The uAPI's name of a multicast group: VNET_MCGRP_MONITOR "monitor"."""
        return c_upper(f"{self.name}-mcgrp-{group}")

    def mcgrp_index(self, group: str) -> str:
        """The module's index of a group in its mcgrps table: VNET_NLGRP_MONITOR."""
        return c_upper(f"{self.name}-nlgrp-{group}")

    @property
    def main_set(self) -> AttrSet:
        return next(s for s in self.sets.values() if s.subset_of is None)

    def uapi_enums(self) -> list[Enum]:
        return [e for e in self.enums.values() if e.header is None]

    def module_enums(self) -> list[Enum]:
        return [e for e in self.enums.values() if e.header == Path(GEN_H).name]

    def _bound(self, value: str, what: str) -> tuple[Const, bool]:
        """A check's bound that names a const, maybe less one ("ifnamsiz - 1")."""
        m = re.fullmatch(r"([0-9A-Za-z_-]+)( - 1)?", value)
        need(m and m.group(1) in self.consts, f"{what}: no const named {value!r} in definitions")
        return self.consts[m.group(1)], bool(m.group(2))

    def limit(self, value: int | str, what: str) -> str:
        """A check's bound as C: a number, or a const by its C name (ETH_ALEN, IFNAMSIZ - 1)."""
        if isinstance(value, int):
            return str(value)
        const, minus = self._bound(value, what)
        return const.c_name + (" - 1" if minus else "")

    def number(self, value: int | str, what: str) -> int:
        """A check's bound as a number."""
        if isinstance(value, int):
            return value
        const, minus = self._bound(value, what)
        return int(const.value) - minus

    def request_attrs(self) -> list[Attr]:
        """What any request may carry: the attributes of the family's one policy."""
        names = {n for op in self.ops for kind in ("do", "dump") for n in op.attrs(kind, "request")}
        return [a for a in self.main_set.attrs if a.name in names]

    def nests(self, attrs: list[Attr]) -> list[AttrSet]:
        """The subsets reachable from these attributes, innermost first."""
        out: list[AttrSet] = []
        for a in attrs:
            if a.type == "nest":
                inner = self.sets[a.spec["nested-attributes"]]
                for s in self.nests(inner.attrs) + [inner]:
                    if s not in out:
                        out.append(s)
        return out


def load(path: Path = SPEC) -> Family:
    spec = yaml.safe_load(path.read_text())
    need(spec.get("protocol") == "genetlink-legacy", "protocol: only genetlink-legacy is rendered")
    need(spec.get("kernel-policy") == "global",
         "kernel-policy: only global is rendered (Linux 6.1 has no split ops)")
    need(spec.get("max-by-define"), "max-by-define: the uAPI defines its MAX values")
    for unsupported in ("kernel-family", "uapi-header"):
        need(unsupported not in spec, f"{unsupported}: not rendered by tools.genl")
    fam = Family(name=spec["name"], doc=spec["doc"], version=spec.get("version", 1),
                 c_family_name=c_upper(spec["c-family-name"]),
                 c_version_name=c_upper(spec["c-version-name"]))
    for d in spec.get("definitions", []):
        _load_definition(fam, d)
    for s in spec["attribute-sets"]:
        _load_set(fam, s)
    for g in (spec.get("mcast-groups") or {}).get("list", []):
        fam.mcgrps.append(g["name"])
        flags = list(g.get("flags", []))
        unknown = [f for f in flags if f not in MCGRP_FLAGS]
        need(not unknown, f"mcast-group {g['name']}: unknown flags {unknown} (known: {', '.join(MCGRP_FLAGS)})")
        fam.mcgrp_flags[g["name"]] = flags
    _load_ops(fam, spec["operations"])
    return fam


def _load_definition(fam: Family, d: dict) -> None:
    name, kind = d["name"], d["type"]
    if kind == "const":
        c_name = c_upper(name if d.get("header") else f"{fam.name}-{name}")
        fam.consts[name] = Const(name, c_name, d["value"], (d.get("doc") or "").strip(), d.get("header"))
        return
    need(kind == "enum", f"definition {name}: type {kind} is not rendered by tools.genl")
    prefix = c_upper(d.get("name-prefix", f"{fam.name}-{name}-"))
    entries, value = [], d.get("value-start", 0)
    for e in d["entries"]:
        e = e if isinstance(e, dict) else {"name": e}
        value = e.get("value", value)
        entries.append(Entry(e["name"], prefix + c_upper(e["name"]), value,
                             one_line(e.get("doc"), f"{name} {e['name']}")))
        value += 1
    cnt = None
    if d.get("render-max"):
        cnt = c_upper(d.get("enum-cnt-name", f"--{prefix}max"))
    fam.enums[name] = Enum(name, c_lower(d.get("enum-name", f"{fam.name}-{name}")), prefix, entries,
                           (d.get("doc") or "").strip(), d.get("header"), cnt)


def _load_set(fam: Family, s: dict) -> None:
    name = s["name"]
    if "subset-of" in s:
        parent = {a.name: a for a in fam.sets[s["subset-of"]].attrs}
        missing = [a["name"] for a in s["attributes"] if a["name"] not in parent]
        need(not missing, f"attribute set {name}: {missing} not in {s['subset-of']}")
        fam.sets[name] = AttrSet(name, [parent[a["name"]] for a in s["attributes"]],
                                 (s.get("doc") or "").strip(), subset_of=s["subset-of"])
        return
    need(not any(x.subset_of is None for x in fam.sets.values()),
         f"attribute set {name}: one attribute space only (nests are its subsets)")
    prefix = c_upper(s.get("name-prefix", f"{fam.name}-a-"))
    attrs, value = [], 0
    for a in s["attributes"]:
        value = a.get("value", value)
        need(value == len(attrs), f"attribute {a['name']}: values must run 0, 1, 2, ... without gaps")
        attrs.append(Attr(a["name"], prefix + c_upper(a["name"]), c_upper(a["name"]), value, a["type"],
                          one_line(a.get("doc"), f"attribute {a['name']}"), a))
        value += 1
    fam.sets[name] = AttrSet(name, attrs, (s.get("doc") or "").strip(), enum_name=s.get("enum-name"))


def _load_ops(fam: Family, ops: dict) -> None:
    prefix = c_upper(ops["name-prefix"])
    fam.ops_enum = c_lower(ops["enum-name"])
    value = 0
    for o in ops["list"]:
        value = o.get("value", value)
        need(value == len(fam.ops), f"operation {o['name']}: values must run 0, 1, 2, ... without gaps")
        for key in ("dont-validate", "notify", "fixed-header", "config-cond"):
            need(key not in o, f"operation {o['name']}: {key} is not rendered by tools.genl")
        op = Op(o["name"], prefix + c_upper(o["name"]), value, o["doc"].strip(), o.get("flags", []),
                o.get("do"), o.get("dump"), o.get("event"), o.get("mcgrp"))
        if op.event is not None:
            need(not (op.do or op.dump), f"operation {op.name}: an event is not also a request")
            need(op.mcgrp in fam.mcgrps, f"operation {op.name}: mcgrp must name one of mcast-groups")
        need(o.get("attribute-set", fam.main_set.name) in fam.sets, f"operation {o['name']}: no such attribute-set")
        known = {a.name for a in fam.sets[o["attribute-set"]].attrs} if "attribute-set" in o else set()
        for kind in ("do", "dump"):
            sub = (op.do if kind == "do" else op.dump) or {}
            need(not {"pre", "post"} & set(sub), f"operation {op.name}: pre/post hooks are not rendered")
            for part in ("request", "reply"):
                unknown = set(op.attrs(kind, part)) - known
                need(not unknown, f"operation {op.name}: {kind} {part} names unknown attributes {sorted(unknown)}")
        unknown = set(op.event_attrs()) - known
        need(not unknown, f"operation {op.name}: event names unknown attributes {sorted(unknown)}")
        fam.ops.append(op)
        value += 1
    for a in fam.main_set.attrs:
        if a.type == "nest":
            need(fam.sets.get(a.spec.get("nested-attributes", "")),
                 f"attribute {a.name}: nested-attributes must name an attribute set")
        if "enum" in a.spec:
            need(a.spec["enum"] in fam.enums, f"attribute {a.name}: no enum {a.spec['enum']!r}")


# ---- C -------------------------------------------------------------------------------------

def width(text: str) -> int:
    """Columns of a line with tabs of 8."""
    return len(text.expandtabs(8))


def tab_to(text: str, column: int) -> str:
    """Text followed by tabs up to column (at least one)."""
    w = width(text)
    return text + "\t" * max(1, (column - w + 7) // 8)


def column_for(lefts: list[str], minimum: int = 0) -> int:
    """The first tab stop past every left part."""
    return max([minimum] + [(width(t) // 8 + 1) * 8 for t in lefts])


def c_comment(doc: str, indent: str = "") -> list[str]:
    """A doc as a C comment: one line if it fits, else a block keeping its paragraphs."""
    doc = doc.strip()
    if "\n" not in doc and width(f"{indent}/* {doc} */") <= C_COLUMNS:
        return [f"{indent}/* {doc} */"]
    lines = [f"{indent}/*"]
    for para in doc.split("\n\n"):
        if len(lines) > 1:
            lines.append(f"{indent} *")
        text = " ".join(para.split())
        lines += [f"{indent} * {t}" for t in textwrap.wrap(text, C_COLUMNS - width(indent) - 3)]
    return lines + [f"{indent} */"]


def c_enum(name: str, rows: list[tuple[str, str]], tail: list[str]) -> list[str]:
    """An enum of (entry, doc) rows, docs beside the entries if all fit, else above."""
    lefts = [f"\t{e}," for e, d in rows if d]
    col = column_for(lefts, 32)
    beside = all(width(tab_to(f"\t{e},", col) + f"/* {d} */") <= C_COLUMNS for e, d in rows if d)
    out = [f"enum {name} {{"]
    for entry, doc in rows:
        if doc and beside:
            out.append(tab_to(f"\t{entry},", col) + f"/* {doc} */")
        else:
            out += c_comment(doc, "\t") if doc else []
            out.append(f"\t{entry},")
    out += [f"\t{t}" for t in tail]
    return out + ["};"]


def c_defines(rows: list[tuple[str, str]]) -> list[str]:
    col = column_for([f"#define {n}" for n, _ in rows], 32)
    return [tab_to(f"#define {n}", col) + v for n, v in rows]


def c_table(decl: str, rows: list[tuple[str, str]]) -> list[str]:
    """A designated-initializer table: [KEY] = value, aligned."""
    col = column_for([f"\t[{k}]" for k, _ in rows])
    return [f"{decl} = {{"] + [tab_to(f"\t[{k}]", col) + f"= {v}," for k, v in rows] + ["};"]


def enum_lines(e: Enum) -> list[str]:
    """A definition's enum, with its count and MAX entries if it renders them."""
    tail = [f"{e.cnt_name},", f"{e.prefix}MAX = ({e.cnt_name} - 1)"] if e.cnt_name else []
    return (c_comment(e.doc) if e.doc else []) + c_enum(e.c_name, [(x.c_name, x.doc) for x in e.entries], tail)


def policy_name(fam: Family, s: AttrSet) -> str:
    return f"{fam.name}_nl_policy" if s.subset_of is None else f"{fam.name}_{c_lower(s.name)}_nl_policy"


def policy_size(s: AttrSet) -> str:
    """A policy covers its set up to the set's last attribute (all of them: VNET_A_MAX)."""
    if s.subset_of is None:
        return f"{max_name(s)} + 1"
    return f"{max(s.attrs, key=lambda a: a.value).c_name} + 1"


def max_name(s: AttrSet) -> str:
    return s.attrs[0].c_name.rsplit("_", 1)[0] + "_MAX"


NLA_INT = {"u8": "NLA_U8", "u16": "NLA_U16", "u32": "NLA_U32", "u64": "NLA_U64"}
NLA_BE = {"u16": "NLA_BE16", "u32": "NLA_BE32"}


def attr_policy(fam: Family, a: Attr) -> str:
    """The nla_policy entry that checks what the spec says of an attribute."""
    checks = dict(a.spec.get("checks") or {})
    what = f"attribute {a.name}"
    if a.type == "binary":
        for key, macro in (("exact-len", "NLA_POLICY_EXACT_LEN"), ("min-len", "NLA_POLICY_MIN_LEN")):
            if key in checks:
                return f"{macro}({fam.limit(checks[key], what)})"
        if "max-len" in checks:
            return f"{{ .type = NLA_BINARY, .len = {fam.limit(checks['max-len'], what)} }}"
        return "{ .type = NLA_BINARY }"
    if a.type == "string":
        if "max-len" in checks:
            return f"{{ .type = NLA_NUL_STRING, .len = {fam.limit(checks['max-len'], what)} }}"
        return "{ .type = NLA_NUL_STRING }"
    if a.type == "nest":
        return f"NLA_POLICY_NESTED({policy_name(fam, fam.sets[a.spec['nested-attributes']])})"
    if a.type == "flag":
        return "{ .type = NLA_FLAG }"
    need(a.type in NLA_INT, f"{what}: type {a.type} cannot be in a request")
    if a.spec.get("byte-order") == "big-endian":
        need(a.type in NLA_BE and not checks, f"{what}: big-endian {a.type} with checks is not rendered")
        return f"{{ .type = {NLA_BE[a.type]} }}"
    low = high = None
    if "enum" in a.spec:  # an enum's range, as ynl-gen checks it
        entries = fam.enums[a.spec["enum"]].entries
        first, last = min(entries, key=lambda x: x.value), max(entries, key=lambda x: x.value)
        low, high = (first.c_name if first.value else None), last.c_name
    low = fam.limit(checks["min"], what) if "min" in checks else low
    high = fam.limit(checks["max"], what) if "max" in checks else high
    kind = NLA_INT[a.type]
    if low is not None and high is not None:
        return f"NLA_POLICY_RANGE({kind}, {low}, {high})"
    if low is not None:
        return f"NLA_POLICY_MIN({kind}, {low})"
    if high is not None:
        return f"NLA_POLICY_MAX({kind}, {high})"
    return f"{{ .type = {kind} }}"


def handler(fam: Family, op: Op, kind: str) -> str:
    return f"{fam.name}_nl_{c_lower(op.name)}_{'doit' if kind == 'do' else 'dumpit'}"


def _mcgrp_init(fam: Family, group: str) -> str:
    flags = " | ".join(MCGRP_FLAGS[f] for f in fam.mcgrp_flags.get(group, []))
    if not flags:
        return f"{{ .name = {fam.mcgrp_define(group)}, }}"
    return f"{{\n\t\t.name\t= {fam.mcgrp_define(group)},\n\t\t.flags\t= {flags},\n\t}}"


GENL_FLAGS = {"admin-perm": "GENL_ADMIN_PERM", "uns-admin-perm": "GENL_UNS_ADMIN_PERM"}
#: Who may join a multicast group (GENL_MCAST_CAP_NET_ADMIN: CAP_NET_ADMIN in the
#: namespace's user namespace, checked at bind; upstream 6.7, Debian 6.1 has it).
MCGRP_FLAGS = {"cap-net-admin": "GENL_MCAST_CAP_NET_ADMIN", "cap-sys-admin": "GENL_MCAST_CAP_SYS_ADMIN"}


def uapi_header(fam: Family) -> str:
    main = fam.main_set
    lines = ["/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */", f"/* {GENERATED} */"]
    listing = []
    # The commands' names in a column wide enough for the longest.
    width = max([21] + [len(op.c_name) + 2 for op in fam.ops])
    for op in fam.ops:
        if not (op.do or op.dump or op.event):
            continue
        short = {a.name: a.short for a in main.attrs}
        names = lambda kind, part: ", ".join(short[n] for n in op.attrs(kind, part))  # noqa: E731
        if op.event:
            text = f'event on group "{op.mcgrp}": ' + ", ".join(short[n] for n in op.event_attrs())
        elif op.dump:
            text = f"dump; each reply: {names('dump', 'reply')}"
        else:
            parts = [names("do", "request")] if op.attrs("do", "request") else []
            parts += [f"reply: {names('do', 'reply')}"] if op.attrs("do", "reply") else []
            text = "; ".join(parts) or "no attributes"
        listing += textwrap.wrap(text, 76, initial_indent=op.c_name.ljust(width),
                                 subsequent_indent=" " * width)
    doc = fam.doc.strip() + "\n\nThe commands (kmod/vnet.yaml documents each, with its errors):"
    block = c_comment(doc)[:-1] + [" *"] + [f" * {t}" for t in listing] + [" */"]
    lines += block
    guard = "_UAPI_" + c_upper(Path(UAPI_H).stem) + "_H"
    lines += [f"#ifndef {guard}", f"#define {guard}", ""]
    lines += c_defines([(fam.c_family_name, f'"{fam.name}"'), (fam.c_version_name, str(fam.version))])
    if fam.mcgrps:
        lines += [""] + c_defines([(fam.mcgrp_define(g), f'"{g}"') for g in fam.mcgrps])
    for c in fam.consts.values():
        if c.header is None:
            lines += [""] + (c_comment(c.doc) if c.doc else []) + c_defines([(c.c_name, str(c.value))])
    for e in fam.uapi_enums():
        lines += [""] + enum_lines(e)
    op_cnt = f"__{fam.ops[0].c_name.rsplit('_', 1)[0]}_MAX"
    lines += [""] + c_enum(fam.ops_enum, [(op.c_name, "") for op in fam.ops], [op_cnt])
    lines += ["", f"#define {op_cnt[2:]} ({op_cnt} - 1)", ""]
    lines += c_enum(c_lower(main.enum_name), [(a.c_name, attr_note(fam, a)) for a in main.attrs], [f"__{max_name(main)}"])
    lines += ["", f"#define {max_name(main)} (__{max_name(main)} - 1)", "", f"#endif /* {guard} */"]
    return "\n".join(lines) + "\n"


def gen_header(fam: Family) -> str:
    main = fam.main_set
    guard = f"_{c_upper(fam.name)}_{c_upper(Path(GEN_H).stem)}_H"
    lines = ["/* SPDX-License-Identifier: GPL-2.0 */", f"/* {GENERATED} */",
             f"#ifndef {guard}", f"#define {guard}", "",
             "#include <net/genetlink.h>", "#include <net/netlink.h>", "",
             f'#include "{Path(UAPI_H).relative_to("kmod")}"']
    for e in fam.module_enums():
        lines += [""] + enum_lines(e)
    lines.append("")
    for e in fam.module_enums():
        lines.append(f"extern const char * const {e.c_name}_names[{e.cnt_name}];")
    lines.append("")
    for s in fam.nests(fam.request_attrs()) + [main]:
        lines.append(f"extern const struct nla_policy {policy_name(fam, s)}[{policy_size(s)}];")
    ops = [op for op in fam.ops if op.do or op.dump]
    lines += ["", f"extern const struct genl_small_ops {fam.name}_nl_ops[{len(ops)}];", ""]
    if fam.mcgrps:
        lines += c_enum(f"{fam.name}_nlgrps", [(fam.mcgrp_index(g), "") for g in fam.mcgrps], [])
        lines += ["", f"extern const struct genl_multicast_group {fam.name}_nl_mcgrps[{len(fam.mcgrps)}];", ""]
    for op in ops:
        if op.do:
            lines.append(f"int {handler(fam, op, 'do')}(struct sk_buff *skb, struct genl_info *info);")
        if op.dump:
            lines.append(f"int {handler(fam, op, 'dump')}(struct sk_buff *skb, struct netlink_callback *cb);")
    lines += ["", f"#endif /* {guard} */"]
    return "\n".join(lines) + "\n"


def gen_source(fam: Family) -> str:
    main = fam.main_set
    headers = sorted({c.header for c in fam.consts.values() if c.header and c.header.startswith("linux/")})
    lines = ["// SPDX-License-Identifier: GPL-2.0", f"/* {GENERATED} */"]
    lines += [f"#include <{h}>" for h in headers] + ["", f'#include "{Path(GEN_H).name}"']
    for e in fam.module_enums():
        lines += [""] + c_table(f"const char * const {e.c_name}_names[{e.cnt_name}]",
                                [(x.c_name, f'"{x.name}"') for x in e.entries])
    for s in fam.nests(fam.request_attrs()) + [main]:
        attrs = fam.request_attrs() if s is main else s.attrs
        lines += [""] + c_table(f"const struct nla_policy {policy_name(fam, s)}[{policy_size(s)}]",
                                [(a.c_name, attr_policy(fam, a)) for a in attrs])
    ops = [op for op in fam.ops if op.do or op.dump]
    lines += ["", f"const struct genl_small_ops {fam.name}_nl_ops[{len(ops)}] = {{"]
    for i, op in enumerate(ops):
        lines.append("\t{" if i == 0 else "\t}, {")
        fields = [(".cmd", op.c_name)]
        fields += [(".doit", handler(fam, op, "do"))] if op.do else []
        fields += [(".dumpit", handler(fam, op, "dump"))] if op.dump else []
        if op.flags:
            fields.append((".flags", " | ".join(GENL_FLAGS[f] for f in op.flags)))
        col = column_for([f"\t\t{k}" for k, _ in fields])
        lines += [tab_to(f"\t\t{k}", col) + f"= {v}," for k, v in fields]
    lines += ["\t},", "};"]
    if fam.mcgrps:
        lines += [""] + c_table(f"const struct genl_multicast_group {fam.name}_nl_mcgrps[{len(fam.mcgrps)}]",
                                [(fam.mcgrp_index(g), _mcgrp_init(fam, g)) for g in fam.mcgrps])
    return "\n".join(lines) + "\n"


# ---- Python --------------------------------------------------------------------------------

def attr_note(fam: Family, a: Attr) -> str:
    """What the uAPI and the Python map say beside an attribute: its wire type, then its doc."""
    checks = a.spec.get("checks") or {}
    kind = ""
    if a.type == "binary":
        kind = f"binary, {fam.number(checks['exact-len'], a.name)} bytes" if "exact-len" in checks else "binary"
    elif a.type == "nest":
        inner = fam.sets[a.spec["nested-attributes"]].attrs
        one = len(inner) == 1 and inner[0].spec.get("multi-attr")
        kind = f"nest of {inner[0].c_name}" if one else "nest: " + ", ".join(x.c_name for x in inner)
    elif a.spec.get("byte-order") == "big-endian":
        kind = f"be{a.type[1:]}"
    elif a.type not in ("unused", "pad"):
        kind = a.type + (f", enum {fam.enums[a.spec['enum']].c_name}" if "enum" in a.spec else "")
    return ", ".join(x for x in (kind, a.doc) if x)


def py_type(fam: Family, a: Attr) -> str:
    """The pyroute2 nla type of an attribute."""
    if a.type == "nest":
        return a.spec["nested-attributes"]
    if a.spec.get("byte-order") == "big-endian":
        return "ip4addr" if a.spec.get("display-hint") == "ipv4" and a.type == "u32" else f"be{a.type[1:]}"
    types = {"unused": "none", "pad": "none", "binary": "cdata", "string": "asciiz", "flag": "flag",
             "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64"}
    need(a.type in types, f"attribute {a.name}: type {a.type} has no pyroute2 type here")
    return types[a.type]


def py_comment(doc: str) -> str:
    return f"  # {doc}" if doc else ""


def py_doc_lines(doc: str, indent: str) -> list[str]:
    return [f"{indent}#: {t}" for t in textwrap.wrap(summary(doc), 96 - len(indent))]


def family_py(fam: Family) -> str:
    main = fam.main_set
    lines = [f"# {GENERATED}",
             f'"""The generic netlink family "{fam.name}" for pyroute2: constants and the message class.',
             "",
             "kmod/vnet.yaml is the spec, and kmod/uapi/vnet_genl.h the C side of the same API; the",
             "client (client.py) imports what it needs from here.",
             '"""',
             "from __future__ import annotations",
             "",
             "from pyroute2.netlink import NLA_F_NESTED, genlmsg, nla",
             "",
             f'{fam.c_family_name} = "{fam.name}"',
             f"{fam.c_version_name} = {fam.version}"]
    for c in fam.consts.values():
        if c.header is None:
            lines += [""] + (py_doc_lines(c.doc, "") if c.doc else []) + [f"{c.c_name} = {c.value}"]
    for e in fam.uapi_enums():
        lines += ["", f"# enum {e.c_name}" + (f" - {summary(e.doc)}" if e.doc else "")]
        lines += [f"{x.c_name} = {x.value}{py_comment(x.doc)}" for x in e.entries]
    lines += ["", f"# enum {fam.ops_enum}"] + [f"{op.c_name} = {op.value}" for op in fam.ops]
    if fam.mcgrps:
        lines += ["", "# multicast groups, by name"] + [f'{fam.mcgrp_define(g)} = "{g}"' for g in fam.mcgrps]
    lines += ["", "",
              "class vnetmsg(genlmsg):",
              f'    """A message of family "{fam.name}": every attribute of enum {c_lower(main.enum_name)}, '
              "in its order.",
              "",
              "    No `prefix`: with one, pyroute2's msg.get(\"header\") would find VNET_A_HEADER",
              '    instead of the netlink header, and its receive loop breaks on a vnet dump."""',
              "",
              "    nla_map = ("]
    lines += [f'        ("{a.c_name}", "{py_type(fam, a)}"),{py_comment(attr_note(fam, a))}' for a in main.attrs]
    lines.append("    )")
    nests = [s for s in fam.sets.values() if s.subset_of]
    for s in nests:
        lines += ["", f"    class {s.name}(nla):", f'        """{s.doc}"""', "",
                  "        nla_flags = NLA_F_NESTED", "        nla_map = ("]
        lines += [f'            ({a.value}, "{a.c_name}", "{py_type(fam, a)}"),' for a in s.attrs]
        lines.append("        )")
    fixups = [f"vnetmsg.{s.name}.{a.spec['nested-attributes']} = vnetmsg.{a.spec['nested-attributes']}"
              for s in nests for a in s.attrs if a.type == "nest"]
    if fixups:
        lines += ["", "", "# pyroute2 finds a nest's attribute classes on the nest's own class."] + fixups
    return "\n".join(lines) + "\n"


STATS_DOC = '''"""The counters and drop reasons a datapath reports in `vn stats`: one registry for both.

The names are what users read and scripts match, so vnetd and the kernel module must
use the same strings for the same event.  Both take them from the `counter` and `drop`
enums of kmod/vnet.yaml: vnetd counts into lists indexed by the constants below, the
module into arrays indexed by `enum vnet_counter` and `enum vnet_drop`, whose name
tables (kmod/netlink_gen.c) hold these strings in this order (tests/unit/test_stats.py
compares them).  A reason only one datapath can meet (a tap read error in vnetd, an
allocation failure in the module) is still listed once.
"""'''

STATS_NAMED = '''

def named(names: tuple[str, ...], counts: list[int]) -> dict[str, int]:
    """The counts that are not 0, by name: what `vn stats` lists (the module leaves
    out zeros too)."""
    return {name: n for name, n in zip(names, counts) if n}
'''


def stats_py(fam: Family) -> str:
    lines = [f"# {GENERATED}", STATS_DOC, "from __future__ import annotations"]
    consts = []
    for registry, name in REGISTRIES.items():
        e = fam.enums[name]
        need(e in fam.module_enums(), f"definition {name}: header must be {Path(GEN_H).name}")
        lines += [""] + py_doc_lines(f"{summary(e.doc)[:-1]}, in the module's `enum {e.c_name}` order.", "")
        lines.append(f"{registry}: tuple[str, ...] = (")
        lines += [f'    "{x.name}",{py_comment(x.doc)}' for x in e.entries]
        lines.append(")")
        short = e.prefix.removeprefix(c_upper(fam.name) + "_")
        consts += [""] + [f"{short}{c_upper(x.name)} = {x.value}" for x in e.entries]
    return "\n".join(lines + consts) + "\n" + STATS_NAMED


# ---- the command -----------------------------------------------------------------------------

def render(fam: Family) -> dict[str, str]:
    """Every generated file, by its path from the top of the tree."""
    return {UAPI_H: uapi_header(fam), GEN_H: gen_header(fam), GEN_C: gen_source(fam),
            FAMILY_PY: family_py(fam), STATS_PY: stats_py(fam)}


def write(root: Path, files: dict[str, str], check: bool) -> list[str]:
    """Write the files under root (or, with check, only compare); the ones that differed."""
    stale = []
    for rel, text in files.items():
        path = root / rel
        if path.exists() and path.read_text() == text:
            continue
        stale.append(rel)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.genl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=SPEC, help=f"the netlink spec [default: {SPEC}]")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help=f"top of the tree the files are written under [default: {ROOT}]")
    parser.add_argument("--check", action="store_true", help="only say which files are out of date (exit 1)")
    args = parser.parse_args(argv)
    try:
        files = render(load(args.spec))
    except SpecError as e:
        print(f"{args.spec}: {e}", file=sys.stderr)
        return 2
    stale = write(args.root, files, args.check)
    for rel in stale:
        print(f"{'out of date' if args.check else 'wrote'} {args.root / rel}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
