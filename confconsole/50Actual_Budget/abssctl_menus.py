"""The menu flow of the Actual Budget confconsole plugin.

Not a menu entry (not executable): each entry module (10Status.py, ...) loads this file
inside its run() and calls `entry(NAME, globals())`. The flow talks to the user only
through confconsole's `console` (codes "ok"/"cancel"; menu and inputbox return
(code, value)) and to abssctl only through `abssctl_cli.Abssctl`, so tests drive it with
a console double and a fake abssctl.
"""

import os
import sys
import types

TITLE = "Actual Budget"
OK = "ok"


def load_sibling(name):
    """Load NAME.py from this directory as a module, once per process, without writing
    bytecode into the plugin directory (a __pycache__ there would outlive the package)."""
    key = "abssctl_confconsole_" + name
    if key in sys.modules:
        return sys.modules[key]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
    mod = types.ModuleType(key)
    mod.__file__ = path
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    exec(code, mod.__dict__)
    sys.modules[key] = mod
    return mod


cli_mod = load_sibling("abssctl_cli")
flows_mod = load_sibling("abssctl_flows")

#: One Abssctl per confconsole session, so its command probes are asked once.
_cli = []


def default_cli():
    if not _cli:
        _cli.append(cli_mod.Abssctl())
    return _cli[0]


def entry(name, module_globals, cli=None, out=None):
    """What an entry module's run() does: the menu `name` in the interactive console, or
    under `confconsole --plugin=... --nointeractive` (no console) a plain-text status on
    stdout for "status" and a one-line note for the rest. Returns None (back to the
    parent menu); never raises."""
    out = out or sys.stdout
    cli = cli or default_cli()
    console = module_globals.get("console")
    interactive = module_globals.get("interactive", True)
    if console is None or not interactive:
        try:
            if name == "status":
                out.write(flows_mod.status_text(cli) + "\n")
            else:
                out.write("Actual Budget: '{}' needs the interactive console "
                          "(run confconsole without --nointeractive)\n".format(name))
        except Exception as e:  # the non-interactive mode must never crash confconsole
            out.write("Actual Budget: {}\n".format(e))
        return None
    flow = flows_mod.Flow(console, cli)
    try:
        getattr(flow, name)()
    except Exception as e:
        # A bug in the plugin is reported in a box and the menu comes back; confconsole
        # would show a traceback and re-run the previous dialog.
        try:
            console.msgbox(TITLE, "Internal error in the Actual Budget plugin: {}: {}".format(
                type(e).__name__, e))
        except Exception:
            pass
        if os.environ.get("CONFCONSOLE_ACTUAL_RAISE"):
            raise
    return None
