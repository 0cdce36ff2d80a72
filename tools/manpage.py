"""Manual pages for vn(8), vnetd(8), network-vnet(8), xm-vnet(1) and vnet.sxp(5).

A manual page that is written by hand drifts from `--help` as soon as an option
changes.  So each page's synopsis, options and commands are rendered here from the
click command objects, with the very texts `--help` prints, and only the prose
around them is hand-written (tools/mantext.py, which includes sections of doc/*.md;
vnet.sxp(5) is doc/config.md).  The pages are committed under doc/man/ so that they
can be read and installed without running anything; tests/test_manpages.py
regenerates them and fails if the committed ones differ.

    python -m tools.manpage --output doc/man     # after changing a command or its docs
    python -m tools.manpage --output doc/man --check
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from tools import mantext, mdroff
from tools.mdroff import escape, protect_lines

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "doc"
OUTPUT = DOC / "man"

# How a link to another document of doc/ reads in a page: the page that holds it.
MAN_OF = {"commands.md": "**vn**(8)", "config.md": "**vnet.sxp**(5)"}
_INCLUDE = re.compile(r"^@include +([^#\s]+)(?:#(.+))?\s*$", re.M)
_METAVAR = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]|[A-Z]")


@dataclass(frozen=True)
class Page:
    """One manual page: its name and section, and the click command it documents
    (`module` is imported only when the page is rendered)."""

    name: str
    section: int
    prog: str | None
    module: str | None
    text: dict[str, str]

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.section}"

    @property
    def sources(self) -> str:
        """Where the page's text comes from: what to edit instead of the page."""
        modules = [f"{self.module.replace('.', '/')}.py"] if self.module else []
        docs = sorted({f"doc/{m.group(1)}" for text in self.text.values() for m in _INCLUDE.finditer(text)})
        return ", ".join(modules + ["tools/mantext.py"] + docs)


PAGES = (
    Page("vn", 8, "vn", "vnet.cli.vn", mantext.VN),
    Page("vnetd", 8, "vnetd", "vnet.datapath.vnetd.daemon", mantext.VNETD),
    Page("network-vnet", 8, "network-vnet", "vnet.host.hook", mantext.NETWORK_VNET),
    Page("xm-vnet", 1, "xm", "vnet.cli.xm", mantext.XM),
    Page("vnet.sxp", 5, None, None, mantext.VNET_SXP),
)
SECTION_NAMES = {1: "User Commands", 5: "File Formats", 8: "System Manager's Manual"}


def command_of(module_name: str) -> click.Command | None:
    """The click command at the top of `module_name` (the one that none of its groups
    contains), or None if the module does not exist yet."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return None
    commands = [c for c in vars(module).values()
                if isinstance(c, click.Command) and getattr(c.callback, "__module__", None) == module_name]
    contained = {id(sub) for c in commands if isinstance(c, click.Group) for sub in c.commands.values()}
    roots = [c for c in commands if id(c) not in contained]
    if len(roots) != 1:
        raise LookupError(f"{module_name}: expected one top-level click command, found "
                          f"{', '.join(c.name or '?' for c in roots) or 'none'}")
    return roots[0]


def _link(text: str, target: str) -> str:
    file = target.split("#")[0].rsplit("/", 1)[-1]
    if file.endswith(".md") and text.strip("`") in (file, target):
        return MAN_OF.get(file, f"`doc/{file}`")
    return text


def _section(title: str, level: int) -> str:
    if level == 1:
        return ""  # an included document's title: the page has its own
    return mdroff.default_section(title, level)


def expand(markdown: str) -> str:
    """`@include FILE#Title` lines replaced by that section of doc/FILE, and
    `@include FILE` by the whole file."""
    def include(m: re.Match) -> str:
        text = (DOC / m.group(1)).read_text()
        return mdroff.extract(text, m.group(2)) if m.group(2) else text
    return _INCLUDE.sub(include, markdown)


def markdown(text: str) -> str:
    return mdroff.render(expand(text), link=_link, section=_section)


def _usage(text: str) -> str:
    """A usage line: metavars (FILE, [OPTIONS]) in italics, the rest as it is."""
    out, last = [], 0
    for m in _METAVAR.finditer(text):
        out.append(escape(text[last:m.start()]) + f"\\fI{escape(m.group())}\\fR")
        last = m.end()
    return "".join(out) + escape(text[last:])


def _opts(text: str) -> str:
    """An option's names and metavar as in `--help` (`-l, --long`, `--state-dir DIR`):
    names in bold, metavars in italics."""
    out = []
    for part in re.split(r"(, | / | )", text):
        if part in (", ", " / ", " ") or not part:
            out.append(escape(part))
        elif part.startswith("-"):
            out.append(f"\\fB{escape(part)}\\fR")
        else:
            out.append(f"\\fI{escape(part)}\\fR")
    return "".join(out)


def _help_paragraphs(cmd: click.Command) -> str:
    """A command's help as `--help` shows it: paragraphs, `\\b` ones kept as they are."""
    text = inspect.cleandoc(cmd.help or cmd.short_help or "").split("\f")[0]
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if para.startswith("\b\n"):
            out.append(".PP\n.nf\n" + protect_lines(escape(para[2:])) + "\n.fi")
        elif para:
            out.append(".PP\n" + protect_lines(escape(" ".join(para.split()))))
    return "\n".join(out)


def _options(cmd: click.Command, ctx: click.Context, with_help: bool = True) -> Iterator[str]:
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or (not with_help and param.name == "help"):
            continue
        names, help_text = record
        yield f".TP\n{_opts(names)}\n{protect_lines(escape(help_text))}"


def _synopsis(prog: str, cmd: click.Command, ctx: click.Context) -> str:
    own = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and p.name != "help"]
    if not isinstance(cmd, click.Group) or len(cmd.commands) > 4:
        return f".B {escape(prog)}\n{_usage(' '.join(cmd.collect_usage_pieces(ctx)))}"
    lines = []
    for name in cmd.list_commands(ctx):
        sub = cmd.commands[name]
        pieces = " ".join(sub.collect_usage_pieces(click.Context(sub, info_name=name, parent=ctx)))
        lead = f"{_usage('[OPTIONS]')} " if own else ""
        lines.append(f".B {escape(prog)}\n{lead}\\fB{escape(name)}\\fR {_usage(pieces)}")
    return "\n.br\n".join(lines)


def _commands(cmd: click.Group, ctx: click.Context) -> str:
    helps = ", ".join(f"\\fB{escape(name)}\\fR" for name in ctx.help_option_names)
    out = [".SH COMMANDS", ".PP", f"Each command also takes {helps}, which prints its help."]
    for name in cmd.list_commands(ctx):
        sub = cmd.commands[name]
        sub_ctx = click.Context(sub, info_name=name, parent=ctx)
        pieces = " ".join(sub.collect_usage_pieces(sub_ctx))
        out.append(f".SS {escape(name)}")
        out.append(f".PP\n\\fB{escape(ctx.info_name or '')} {escape(name)}\\fR {_usage(pieces)}")
        out.append(_help_paragraphs(sub))
        out.extend(_options(sub, sub_ctx, with_help=False))
    return "\n".join(out)


def render(page: Page) -> str:
    """The page as roff (man macros)."""
    cmd = command_of(page.module) if page.module else None
    names = page.name if page.prog in (None, page.name) else f"{page.name}, {page.prog}"
    out = [
        f'.\\" Generated by "python -m tools.manpage" from {page.sources}; edit those, not this file.',
        f'.TH {escape(page.name.upper())} {page.section} "" vnet "{SECTION_NAMES[page.section]}"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{escape(names)} \\- {escape(page.text['summary'])}",
        ".SH SYNOPSIS",
    ]
    # The command's context_settings (help_option_names) apply, as they do for --help.
    ctx = click.Context(cmd, info_name=page.prog, **cmd.context_settings) if cmd is not None else None
    if "synopsis" in page.text:
        out.append(mdroff.inline(page.text["synopsis"].strip(), _link))
    elif cmd is not None:
        out.append(_synopsis(page.prog or page.name, cmd, ctx))
    else:
        out.append(f".B {escape(page.prog or page.name)}")
    out += [".SH DESCRIPTION", markdown(page.text["description"]).rstrip("\n")]
    if cmd is not None:
        out += [".SH OPTIONS", *_options(cmd, ctx)]
        if isinstance(cmd, click.Group):
            out.append(_commands(cmd, ctx))
    out.append(markdown(page.text["after"]).rstrip("\n"))
    return "\n".join(out) + "\n"


def write(output: Path, check: bool = False) -> list[str]:
    """Write every page to `output` (or with `check`, only compare); the names of the
    pages that were missing or differed."""
    stale = []
    for page in PAGES:
        if page.module and command_of(page.module) is None:
            print(f"manpage: {page.filename}: {page.module} does not exist yet; its page has no "
                  "options or commands", file=sys.stderr)
        text = render(page)
        path = output / page.filename
        if not path.exists() or path.read_text() != text:
            stale.append(page.filename)
            if not check:
                output.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.manpage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"directory of the pages [default: {OUTPUT}]")
    parser.add_argument("--check", action="store_true", help="only say which pages are out of date (exit 1)")
    args = parser.parse_args(argv)
    stale = write(args.output, args.check)
    for name in stale:
        print(f"{'out of date' if args.check else 'wrote'} {args.output / name}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
