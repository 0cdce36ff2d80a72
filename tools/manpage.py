"""Manual pages for vn(8), vnetd(8), network-vnet(8), xm-vnet(1) and vnet.sxp(5).

A manual page that is written by hand drifts from `--help` as soon as an option
changes.  So each page's synopsis, options and commands are rendered here from the
click command objects, with the texts `--help` prints, and only the prose around
them is hand-written (tools/mantext.py, which includes sections of doc/*.md;
vnet.sxp(5) is doc/config.md).  The pages are committed under doc/man/ so that they
can be read and installed without running anything; tests/unit/test_manpages.py
regenerates them and fails if the committed ones differ.

The pages are rendered from what the commands declare (names, metavars, types,
defaults, help texts), not from click's help formatter: that changes between click
releases (8.4.2 bracketed COMMAND, 8.5 renamed the help option and gave arguments
help records), and a page must not go stale because a fresh install got a newer
click.  The pages are the same under click 8.0 to 8.5; the tests check that each
option's names and metavar still read as `--help` prints them.

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


def _is_help(param: click.Parameter, ctx: click.Context) -> bool:
    """Whether `param` is the help option click adds (known by its names: its
    parameter name differs between click releases)."""
    return isinstance(param, click.Option) and set(param.opts) <= set(ctx.help_option_names)


def _metavar(param: click.Parameter) -> str:
    """What names a parameter's value: its own metavar, else its choices or its
    type's name; an optional argument in brackets, `...` after one that repeats."""
    if param.metavar is not None:
        return param.metavar
    argument = isinstance(param, click.Argument)
    if isinstance(param.type, click.Choice):
        choices = "|".join(str(c) for c in param.type.choices)
        text = f"{{{choices}}}" if argument and param.required else f"[{choices}]"
    else:
        text = param.name.upper() if argument else param.type.name.upper()
    if argument and not param.required:
        text = f"[{text}]"
    return text + ("..." if param.nargs != 1 else "")


def _names(option: click.Option) -> str:
    """An option's names (`-l, --long`, `--offload / --no-offload`) and metavar, short
    names first."""
    def joined(opts: list[str]) -> str:
        return ", ".join(sorted(opts, key=lambda o: len(o) - len(o.lstrip(o[:1]))))
    names = " / ".join(joined(opts) for opts in (option.opts, option.secondary_opts) if opts)
    return names if option.is_flag or option.count else f"{names} {_metavar(option)}"


def _range(kind: click.ParamType) -> str | None:
    """A number range's bounds (`1<=x<=255`, `x>=1`), or None for another type."""
    if not isinstance(kind, (click.IntRange, click.FloatRange)) or kind.min is kind.max is None:
        return None
    if kind.min is None:
        return f"x{'<' if kind.max_open else '<='}{kind.max}"
    if kind.max is None:
        return f"x{'>' if kind.min_open else '>='}{kind.min}"
    return f"{kind.min}{'<' if kind.min_open else '<='}x{'<' if kind.max_open else '<='}{kind.max}"


def _default(option: click.Option, ctx: click.Context) -> str | None:
    """The default an option shows in its help (show_default), or None."""
    show = option.show_default if option.show_default is not None else ctx.show_default
    if not show:
        return None
    if isinstance(show, str):
        return f"({show})"
    value = option.default
    if callable(value):
        return "(dynamic)"
    if option.is_flag and option.secondary_opts:
        name = (option.opts if value else option.secondary_opts)[0]
        return name.lstrip(name[:1])
    if value is None or (option.is_flag and not value):
        return None
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _help(option: click.Option, ctx: click.Context) -> str:
    """An option's help with what `--help` adds in brackets: default, range, required."""
    extra = [f"default: {default}"] if (default := _default(option, ctx)) else []
    extra += [bounds] if (bounds := _range(option.type)) else []
    extra += ["required"] if option.required else []
    text = option.help or ""
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return text


def _options(cmd: click.Command, ctx: click.Context, with_help: bool = True) -> Iterator[str]:
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden and (with_help or not _is_help(param, ctx)):
            yield f".TP\n{_opts(_names(param))}\n{protect_lines(escape(_help(param, ctx)))}"


def _usage_pieces(cmd: click.Command) -> str:
    """What follows the command's name in its usage line: `[OPTIONS]`, its arguments,
    and for a group the command (in brackets if the group runs without one)."""
    pieces = [cmd.options_metavar or ""]
    pieces += [_metavar(p) for p in cmd.params if isinstance(p, click.Argument)]
    if isinstance(cmd, click.Group):
        pieces.append("[COMMAND] [ARGS]..." if cmd.invoke_without_command else "COMMAND [ARGS]...")
    return " ".join(p for p in pieces if p)


def _synopsis(prog: str, cmd: click.Command, ctx: click.Context) -> str:
    own = [p for p in cmd.get_params(ctx) if isinstance(p, click.Option) and not _is_help(p, ctx)]
    if not isinstance(cmd, click.Group) or len(cmd.commands) > 4:
        return f".B {escape(prog)}\n{_usage(_usage_pieces(cmd))}"
    lines = []
    for name in cmd.list_commands(ctx):
        lead = f"{_usage('[OPTIONS]')} " if own else ""
        lines.append(f".B {escape(prog)}\n{lead}\\fB{escape(name)}\\fR {_usage(_usage_pieces(cmd.commands[name]))}")
    return "\n.br\n".join(lines)


def _commands(cmd: click.Group, ctx: click.Context) -> str:
    helps = ", ".join(f"\\fB{escape(name)}\\fR" for name in ctx.help_option_names)
    out = [".SH COMMANDS", ".PP", f"Each command also takes {helps}, which prints its help."]
    out.extend(_command_sections(cmd, ctx, ""))
    return "\n".join(out)


def _command_sections(cmd: click.Group, ctx: click.Context, prefix: str) -> Iterator[str]:
    """A subsection per command; a command that is a group (`vn topo`) is followed by
    one per command of its own (`topo apply`, ...)."""
    for name in cmd.list_commands(ctx):
        sub = cmd.commands[name]
        sub_ctx = click.Context(sub, info_name=name, parent=ctx)
        yield f".SS {escape(prefix + name)}"
        yield f".PP\n\\fB{escape(ctx.find_root().info_name or '')} {escape(prefix + name)}\\fR {_usage(_usage_pieces(sub))}"
        yield _help_paragraphs(sub)
        yield from _options(sub, sub_ctx, with_help=False)
        if isinstance(sub, click.Group):
            yield from _command_sections(sub, sub_ctx, f"{prefix}{name} ")


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
