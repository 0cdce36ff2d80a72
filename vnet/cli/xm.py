"""`xm`: the Xen xm's vnet commands (vnet-create, vnet-delete, vnet-list), and only those.

Xen users created vnets with `xm vnet-create FILE` and xend did the work (reference 3.3).
This `xm` keeps those three commands and their output, over vnet's own control model:
the same Controller as `vn`, so the state file, the datapath choice, the checks and the
errors are `vn`'s.  It is not Xen's xm: any other xm command is refused with a message
that says so, rather than guessed at.

Differences from xend, on purpose:
* `vnet-delete` deletes the vnet from the datapath and the state.  xend's was a no-op
  (it sent a malformed `vnet.del`, reference section 8 #14), so the device stayed.
* `vnet-delete` keeps the bridge, as `vn vnet-delete` does: VMs may still be attached to
  it, and a later `vnet-create` re-attaches the vnet device to it.  `-b` deletes it, as
  xend always did.
* `vnet-delete` refuses while interfaces other than the vnet's own are on the bridge
  (xend cut them off silently); `--force` deletes anyway and names them.
* ids are printed in the 39-character form, as everywhere in vnet.
"""
from __future__ import annotations

import sys

import click

import sxp
from vnet.cli.vn import VnGroup, config_file, force_option, host_options, report_deletion
from vnet.control.controller import Controller
from vnet.model.state import StateError

COMMANDS = ("vnet-create", "vnet-delete", "vnet-list")


class XmGroup(VnGroup):
    """`vn`'s error reporting under the name `xm`, refusing the xm commands it lacks."""

    prog = "xm"

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else None
        if name is not None and name not in self.commands and not name.startswith("-"):
            # Exit 1, not a usage error: the command line may be right for Xen's xm.
            raise click.ClickException(
                f"'{name}' is not provided here: this xm only has vnet-create, vnet-delete and "
                "vnet-list (vnet's xm-compatible commands)")
        return super().resolve_command(ctx, args)


@click.group(cls=XmGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@host_options
@click.pass_context
def xm(ctx: click.Context, state_dir: str | None, socket: str | None, datapath: str | None) -> None:
    """Xen xm's vnet commands (vnet-create, vnet-delete, vnet-list) for vnet."""
    ctx.obj = Controller(state_dir, socket, choice=datapath)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@xm.command("vnet-create")
@click.argument("path", metavar="FILE")
@click.pass_obj
def vnet_create(ctrl: Controller, path: str) -> None:
    """Create a vnet from FILE, a vnet config: (vnet (id 97) ...)."""
    ctrl.create_vnet(config_file(path))


@xm.command("vnet-delete")
@click.option("-b", "--bridge", "delete_bridge", is_flag=True,
              help="Also delete the vnet's bridge (xend always did).")
@force_option
@click.argument("vnet", metavar="ID")
@click.pass_obj
def vnet_delete(ctrl: Controller, delete_bridge: bool, force: bool, vnet: str) -> None:
    """Delete a vnet from the datapath and the state.

    ID is a vnet id (97, or the long form), or the vnet's vnetif or bridge name.
    Refused while other interfaces are on its bridge, unless --force."""
    report_deletion(ctrl.delete_vnet(vnet, delete_bridge, force))


@xm.command("vnet-list")
@click.option("-l", "--long", "long_", is_flag=True, help="Print each vnet's configuration.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.pass_obj
def vnet_list(ctrl: Controller, long_: bool, ids: tuple[str, ...]) -> None:
    """List vnet ids, or their configurations with -l or IDs.

    Like xm, every ID given is looked up and a missing one does not stop the others;
    each is reported, and the exit status is then 1."""
    if not ids:
        for cfg in ctrl.vnet_configs():
            click.echo(sxp.pretty(cfg.to_sxp()) if long_ else str(cfg.id), nl=not long_)
        return
    missing = False
    for text in ids:
        try:
            cfg = ctrl.find_vnet(text)
        except StateError as e:
            click.echo(f"xm: {e}", err=True)
            missing = True
            continue
        click.echo(sxp.pretty(cfg.to_sxp()), nl=False)
    if missing:
        sys.exit(1)


def main() -> None:
    xm(prog_name="xm")


if __name__ == "__main__":
    main()
