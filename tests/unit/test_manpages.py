"""The manual pages under doc/man: current with the commands, clean to render, complete.

The pages are generated (tools/manpage.py); these tests keep the committed copies from
drifting from `--help`: regenerate with `python -m tools.manpage --output doc/man`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tools import manpage, mdroff
from tools.manpage import OUTPUT, PAGES, Page, command_of, render

REGENERATE = "regenerate them with: python -m tools.manpage --output doc/man"
HELP_OPTION = re.compile(r"^  (-\S.*?)(?:\s{2,}|$)")
by_name = pytest.mark.parametrize("page", PAGES, ids=[p.filename for p in PAGES])
needs_man = pytest.mark.skipif(shutil.which("man") is None, reason="needs man (apt package man-db)")


def rendered(path: Path) -> tuple[str, str]:
    """The page as `man` shows it at 80 columns (overstrikes removed), and man's warnings."""
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"}
    r = subprocess.run(["man", "-l", "--warnings=w", str(path)], capture_output=True, text=True, env=env,
                       timeout=60, check=True)
    return re.sub(".\b", "", r.stdout), r.stderr


def help_texts(page: Page) -> dict[str, str]:
    """`--help` of the page's command and of each of its subcommands, by command line."""
    cmd = command_of(page.module)
    if cmd is None:
        pytest.skip(f"{page.module} does not exist yet")
    lines = [[]] + [[name] for name in (cmd.commands if isinstance(cmd, click.Group) else ())]
    out = {}
    for args in lines:
        r = CliRunner().invoke(cmd, [*args, "--help"], prog_name=page.prog)
        assert r.exit_code == 0, r.output
        out[" ".join([page.prog, *args])] = r.stdout
    return out


@by_name
def test_committed_page_is_current(page: Page) -> None:
    path = OUTPUT / page.filename
    assert path.exists(), f"{path} is missing; {REGENERATE}"
    assert path.read_text() == render(page), f"{path} is out of date; {REGENERATE}"


@needs_man
@by_name
def test_page_renders_without_warnings(page: Page) -> None:
    text, warnings = rendered(OUTPUT / page.filename)
    assert warnings == ""
    assert text.startswith(f"{page.name.upper()}({page.section})")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f"\n{section}\n" in text
    groff = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(OUTPUT / page.filename)],
                           capture_output=True, text=True, timeout=60)
    assert (groff.returncode, groff.stderr) == (0, "")


@needs_man
@pytest.mark.parametrize("page", [p for p in PAGES if p.module], ids=[p.filename for p in PAGES if p.module])
def test_page_has_every_option_and_command_of_help(page: Page) -> None:
    text = " ".join(rendered(OUTPUT / page.filename)[0].split())
    for command_line, help_text in help_texts(page).items():
        assert f" {command_line.split()[-1]} " in text
        # Each option as --help shows it: "-l, --long", "--state-dir DIR".
        options = [m.group(1) for line in help_text.splitlines() if (m := HELP_OPTION.match(line))]
        assert options, f"no options found in {command_line} --help"
        for option in options:
            assert f" {option} " in text, f"{command_line} --help lists {option}, {page.filename} does not"


def test_generator_writes_and_checks(tmp_path: Path) -> None:
    assert manpage.main(["--output", str(tmp_path), "--check"]) == 1
    assert not any(tmp_path.iterdir())
    assert manpage.main(["--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.filename for p in PAGES)
    assert manpage.main(["--output", str(tmp_path), "--check"]) == 0


@pytest.mark.parametrize("markdown, roff", [
    ("a `-x` b", ".PP\na \\fB\\-x\\fR b\n"),
    ("``a ` b`` **c `d`** [e](f.md#g)", ".PP\n\\fBa ` b\\fR \\fBc d\\fR e\n"),
    (".starts with a dot", ".PP\n\\&.starts with a dot\n"),
    ("| A | B |\n|---|---|\n| `x` | 1<br>.2 |", ".PP\n.TP\n\\fBx\\fR\n1\n.br\n\\&.2\n"),
    ("* one\n  ```\n  code \\ here\n  ```\n* two", ".IP \\(bu 2\none\n.IP\n.nf\ncode \\e here\n.fi\n.IP \\(bu 2\ntwo\n"),
    ("## Title\n\n—", '.SH "TITLE"\n.PP\n\\[u2014]\n'),
])
def test_markdown_to_roff(markdown: str, roff: str) -> None:
    assert mdroff.render(markdown) == roff


def test_sections_are_extracted_up_to_the_next_heading_of_their_level() -> None:
    doc = "# T\n## A\na\n```\n# not a heading\n```\n### A1\nb\n## B\nc\n"
    assert mdroff.extract(doc, "A") == "a\n```\n# not a heading\n```\n### A1\nb"
    assert mdroff.extract(doc, "B") == "c\n"
    with pytest.raises(KeyError):
        mdroff.extract(doc, "C")
