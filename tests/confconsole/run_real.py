#!/usr/bin/env python3
"""Drive the confconsole plugin against the REAL abssctl (container tier; run as root on a
machine where `abssctl instance create` works, e.g. from an e2e scenario):

    python3 tests/confconsole/run_real.py [--plugin-dir DIR] [--name NAME] [--domain D] [--keep]

The same console double as the CPU tests answers the menus: create (password through
stdin), status, manage (restart, logs, back up now, restore in place, restore as a new
instance), backup schedule (change, off), then delete what it created (unless --keep).
Each step is checked through `abssctl --json` itself. Prints one line per step; exit 0
when all pass, 1 at the first failure (with what the plugin showed).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import helpers  # noqa: E402
from console_double import Menu, No, Password, ScriptedConsole, Text, Yes  # noqa: E402

INSTALLED = "/usr/lib/confconsole/plugins.d/50Actual_Budget"


class StepFailed(Exception):
    pass


def abssctl(*args):
    r = subprocess.run(["abssctl", "--json"] + list(args), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        return r.returncode, None


def instances():
    rc, data = abssctl("instance", "list")
    return {i["name"]: i for i in (data or {}).get("instances", [])} if rc == 0 else {}


def first(choices):
    """The first entry of a menu (the newest backup: the plugin lists them newest first)."""
    return choices[0][0]


class Runner:
    def __init__(self, plugin_dir):
        self.plugin_dir = plugin_dir
        entry = helpers.confconsole_load(os.path.join(plugin_dir, helpers.ENTRIES[0]))
        self.menus = entry._menus()
        self.cli = self.menus.cli_mod.Abssctl()

    def drive(self, step, menu, *answers):
        con = ScriptedConsole(answers)
        self.menus.entry(menu, {"console": con, "interactive": True}, cli=self.cli)
        errors = [c for c in con.calls if c[0] == "msgbox" and (c[1] or "").endswith(": error")]
        if errors:
            raise StepFailed("{}: the plugin showed an error:\n{}".format(step, errors[0][2]))
        if con.unused():
            raise StepFailed("{}: answers never asked for: {}\nshown:\n{}".format(
                step, con.unused(), con.shown()))
        return con

    def check(self, step, cond, con=None, detail=""):
        if not cond:
            raise StepFailed("{}: check failed {}\nshown:\n{}".format(
                step, detail, con.shown() if con else ""))
        print("PASS {}".format(step), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plugin-dir", default=INSTALLED if os.path.isdir(INSTALLED)
                    else helpers.PLUGIN_DIR)
    ap.add_argument("--name", default="ccplugin")
    ap.add_argument("--domain", default=None, help="default: NAME.example.test")
    ap.add_argument("--keep", action="store_true", help="leave the instances in place")
    a = ap.parse_args()
    os.environ["CONFCONSOLE_ACTUAL_RAISE"] = "1"
    name, copy = a.name, a.name + "-copy"
    domain = a.domain or "{}.example.test".format(name)
    r = Runner(a.plugin_dir)
    print("plugin: {}".format(a.plugin_dir), flush=True)
    try:
        con = r.drive("create", "create", Text(name), Menu("Domain"), Text(domain),
                      Password("confconsole-pw-1"), Password("confconsole-pw-1"), Yes)
        got = instances().get(name)
        r.check("create", got is not None and got.get("domain") == domain
                and "is ready" in con.boxes()[-1] and got.get("url", "?") in con.boxes()[-1], con)

        con = r.drive("status", "status")
        r.check("status", "{}: https://{}/".format(name, domain) in con.boxes()[-1], con)

        con = r.drive("restart", "manage", Menu(name), Menu("Restart"))
        r.check("manage restart", "done" in con.boxes()[-1], con)

        con = r.drive("logs", "manage", Menu(name), Menu("Logs"))
        r.check("manage logs", con.boxes()[-1].strip() != "", con)

        before = len((abssctl("backup", "list", name)[1] or {}).get("backups", []))
        con = r.drive("backup", "manage", Menu(name), Menu("Backup"))
        after = len((abssctl("backup", "list", name)[1] or {}).get("backups", []))
        r.check("manage back up now", after == before + 1, con, "({} -> {})".format(before, after))

        con = r.drive("restore in place", "manage", Menu(name), Menu("Restore"), Menu(first),
                      Menu("In place"), Yes)
        r.check("manage restore in place", "restored into" in con.boxes()[-1]
                and instances().get(name, {}).get("health") == "up", con)

        copy_domain = "{}.example.test".format(copy)
        con = r.drive("restore as new", "manage", Menu(name), Menu("Restore"), Menu(first),
                      Menu("As new"), Text(copy), Text(copy_domain))
        r.check("manage restore as new", instances().get(copy, {}).get("domain") == copy_domain,
                con)

        con = r.drive("schedule", "schedules", Menu(name), Menu("Change"), Text("*-*-* 04:00"),
                      Text("3"), Text(""), Text(""))
        rows = {x["instance"]: x for x in
                (abssctl("backup", "schedule", "--list")[1] or {}).get("schedules", [])}
        sched = (rows.get(name) or {}).get("schedule") or {}
        r.check("schedule change", sched.get("on_calendar") == "*-*-* 04:00"
                and sched.get("keep_daily") == 3, con, str(sched))

        con = r.drive("schedule off", "schedules", Menu(name), Menu("Off"), Yes)
        rows = {x["instance"]: x for x in
                (abssctl("backup", "schedule", "--list")[1] or {}).get("schedules", [])}
        r.check("schedule off", (rows.get(name) or {}).get("schedule") is None, con)

        if not a.keep:
            con = r.drive("delete copy", "manage", Menu(copy), Menu("Delete"), Yes, No)
            r.check("delete without backup", copy not in instances(), con)
            con = r.drive("delete", "manage", Menu(name), Menu("Delete"), Yes, Yes)
            r.check("delete with backup", name not in instances()
                    and "backed up first" in con.boxes()[-1], con)
    except StepFailed as e:
        print("FAIL {}".format(e), flush=True)
        return 1
    print("all plugin steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
