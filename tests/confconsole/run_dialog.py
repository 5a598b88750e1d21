#!/usr/bin/env python3
"""Open the installed confconsole plugin's menu on this terminal with the REAL `dialog`:

    python3 tests/confconsole/run_dialog.py [--plugin-dir DIR] [--log FILE]

For a walk under tmux (tests/e2e/scenarios/74-confconsole.sh sends the keys and reads the
screen): the plugin directory is loaded the way confconsole's PluginManager/PluginDir
load it (every executable *.py imported with PLUGIN_PATH set, `console` and
`interactive` injected into each module; the label is the file name without its leading
digits, '_' as a space, capitalised; the description is the module docstring) and its menu
is shown with dialog_console.DialogConsole (pythondialog, as confconsole). Choosing an
entry calls its run(); when run() returns, the menu comes back (a plugin in a directory
goes back to its parent). An exception escaping run() is shown in a box, as confconsole
does, and logged. Back (or Esc) on this menu ends the program, exit 0.
"""

import argparse
import json
import os
import re
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ beside the tests (or in the plugin dir)

import helpers  # noqa: E402
from dialog_console import DialogConsole  # noqa: E402

INSTALLED = "/usr/lib/confconsole/plugins.d/50Actual_Budget"


def label(path):
    """confconsole's menu label for a plugin file or directory."""
    name = re.sub(r"^\d*", "", os.path.basename(path)).replace("_", " ")
    return os.path.splitext(name)[0].capitalize()


def load_entries(plugin_dir, console):
    entries = []
    for f in sorted(os.listdir(plugin_dir)):
        path = os.path.join(plugin_dir, f)
        if not f.endswith(".py") or not os.path.isfile(path) or not os.stat(path).st_mode & 0o111:
            continue
        module = helpers.confconsole_load(path)
        module.console = console
        module.interactive = True
        if hasattr(module, "run"):
            entries.append((label(path), str(module.__doc__), module))
    return entries


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin-dir", default=INSTALLED if os.path.isdir(INSTALLED)
                    else helpers.PLUGIN_DIR)
    ap.add_argument("--log", help="append every screen and every exception here (JSON lines)")
    a = ap.parse_args()
    console = DialogConsole(log=a.log)
    entries = load_entries(a.plugin_dir, console)
    by_tag = {tag: module for tag, _, module in entries}
    title = label(a.plugin_dir)
    while True:
        code, tag = console.menu(title, title + "\n", [(t, d) for t, d, _ in entries])
        if code != "ok":
            return 0
        try:
            by_tag[tag].run()
        except Exception:
            text = traceback.format_exc()
            if a.log:
                with open(a.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"kind": "exception", "entry": tag, "text": text}) + "\n")
            console.msgbox("Caught exception", text)


if __name__ == "__main__":
    sys.exit(main())
