"""The screens of the Actual Budget confconsole plugin (loaded by abssctl_menus.py).

Every abssctl call goes through `Flow.call`: a failure is shown (abssctl's message and
hint) and the screen goes back to its menu. Mutations pass --yes: the plugin asks its
own questions first, and abssctl never gets the console's terminal (stdin is a pipe).
"""

import sys

TITLE = "Actual Budget"
OK = "ok"
BUSY_NOTE = "This can take a while; do not close the console."


def _cli_mod():
    return sys.modules["abssctl_confconsole_abssctl_cli"]


def _time(ts):
    """An RFC 3339 UTC time as 'YYYY-MM-DD HH:MM UTC' (anything else unchanged)."""
    if not isinstance(ts, str) or len(ts) < 16 or "T" not in ts:
        return str(ts) if ts is not None else "-"
    return ts[:10] + " " + ts[11:16] + " UTC"


def _size(n):
    """Bytes as the nearest KB/MB/GB (anything not a number unchanged)."""
    if not isinstance(n, (int, float)):
        return str(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return "{:.0f} {}".format(n, unit) if unit == "bytes" else "{:.1f} {}".format(n, unit)
        n /= 1000.0
    return str(n)


def _last_backups(backups):
    """The newest backup per instance (the index lists them oldest first)."""
    last = {}
    for b in backups or []:
        if isinstance(b, dict) and b.get("instance"):
            prev = last.get(b["instance"])
            if prev is None or str(b.get("created_at", "")) >= str(prev.get("created_at", "")):
                last[b["instance"]] = b
    return last


def _doctor_items(data):
    """The probe results of a doctor report, whatever key holds them."""
    if isinstance(data, list):
        return [d for d in data if isinstance(d, dict)]
    if isinstance(data, dict):
        for v in data.values():
            if isinstance(v, list) and v and all(isinstance(d, dict) and "status" in d for d in v):
                return v
    return []


def doctor_summary(data):
    items = _doctor_items(data)
    if not items:
        return ["Doctor: no probe results"]
    counts = {}
    for d in items:
        counts[str(d.get("status"))] = counts.get(str(d.get("status")), 0) + 1
    order = sorted(counts, key=lambda s: {"green": 0, "yellow": 1, "red": 2}.get(s, 3))
    lines = ["Doctor: " + ", ".join("{} {}".format(counts[s], s) for s in order)]
    for d in items:
        if d.get("status") not in ("green", "ok"):
            lines.append("  [{}] {}".format(d.get("status"), d.get("message") or d.get("id")))
            if d.get("remediation"):
                lines.append("      fix: {}".format(d["remediation"]))
    return lines


def status_text(cli):
    """The whole status as text: instances, their last backup, the update check and the
    doctor summary (each part only when abssctl has it)."""
    ok, data, err = cli.run(["instance", "list"])
    if not ok:
        return "Instances could not be listed: " + _cli_mod().format_error(err)
    instances = data.get("instances") or []
    last = {}
    if cli.has("backup", "list"):
        bok, bdata, _ = cli.run(["backup", "list"])
        if bok and isinstance(bdata, dict):
            last = _last_backups(bdata.get("backups"))
    lines = []
    if not instances:
        lines.append("No instances yet (use 'New instance').")
    for i in instances:
        name = i.get("name", "?")
        lines.append("{}: {}".format(name, i.get("url", "-")))
        state = "{}/{}".format(i.get("active_state"), i.get("sub_state")) \
            if i.get("active_state") else "state unknown"
        version = i.get("version") or "{} (missing)".format(i.get("version_binding"))
        lines.append("  {}, health {}, Actual {}".format(
            state, i.get("health") or "unknown", version))
        b = last.get(name)
        if b:
            lines.append("  last backup: {} ({}, {})".format(
                _time(b.get("created_at")), b.get("reason", "-"), b.get("status", "-")))
        elif cli.has("backup", "list"):
            lines.append("  last backup: none")
        if i.get("update_available"):
            lines.append("  update available: {}".format(i["update_available"]))
    for w in data.get("warnings") or []:
        lines.append("warning: {}".format(w))
    updates = _cli_mod().read_json_file(_cli_mod().updates_file(cli))
    if isinstance(updates, dict):
        lines.append("")
        lines.append("Update check ({}): newest release {}, installed {}".format(
            _time(updates.get("checked_at")), updates.get("latest") or "?",
            ", ".join(updates.get("installed") or []) or "none"))
        if updates.get("update_available"):
            lines.append("  an update is available (Versions > Upgrade all)")
        if updates.get("error"):
            lines.append("  last check failed: {}".format(updates["error"]))
    if cli.has("doctor"):
        dok, ddata, derr = cli.run(["doctor"])
        lines.append("")
        if ddata is not None:
            lines.extend(doctor_summary(ddata))
        else:
            lines.append("Doctor: " + _cli_mod().format_error(derr))
    return "\n".join(lines)


class Flow:
    """The screens; `console` is confconsole's (or a double), `cli` an Abssctl."""

    def __init__(self, console, cli):
        self.c = console
        self.a = cli

    # -- small dialogs -------------------------------------------------------------
    def msg(self, text, title=TITLE):
        self.c.msgbox(title, text)

    def fail(self, error, what=None):
        head = "{} failed.\n\n".format(what) if what else ""
        self.c.msgbox(TITLE + ": error", head + _cli_mod().format_error(error))

    def ask(self, title, text, init=""):
        code, value = self.c.inputbox(title, text, init)
        return value.strip() if code == OK and value is not None else None

    def secret(self, title, text):
        """A password without echo (dialog's passwordbox through confconsole's wrapper);
        None if cancelled."""
        if hasattr(self.c, "_wrapper"):
            code, value = self.c._wrapper("passwordbox", text, 12, 65, title=title, insecure=True)
        else:
            code, value = self.c.inputbox(title, text, "")
        return value if code == OK else None

    def confirm(self, text):
        return self.c.yesno(text, autosize=True) == OK

    def choose(self, title, text, items):
        if not items:
            return None
        code, tag = self.c.menu(title, text, items)
        return tag if code == OK else None

    def info(self, text):
        """A box that stays while abssctl works (dialog's infobox, sized for the text:
        confconsole's own infobox() takes dialog's small default size)."""
        if hasattr(self.c, "_wrapper"):
            self.c._wrapper("infobox", text, 9, 65)
        else:
            self.c.infobox(text)

    def _progress(self, busy):
        """Show `busy` now; the returned callback adds the seconds elapsed."""
        self.info(busy)
        return lambda s: self.info("{}\n\n{}\nElapsed: {} s".format(busy, BUSY_NOTE, s))

    def call(self, args, stdin=None, busy=None, what=None):
        """Run abssctl; on failure show why and return (False, data)."""
        progress = self._progress(busy) if busy else None
        ok, data, err = self.a.run(args, stdin=stdin, progress=progress)
        if not ok:
            self.fail(err, what)
        return ok, data

    def pick_instance(self, title, text="Choose an instance"):
        ok, data = self.call(["instance", "list"], what="Listing the instances")
        if not ok:
            return None
        items = [(i["name"], "{} {}".format(i.get("url", ""), i.get("health") or ""))
                 for i in data.get("instances") or [] if i.get("name")]
        if not items:
            self.msg("There are no instances yet (use 'New instance').")
            return None
        return self.choose(title, text, items)

    # -- Status ---------------------------------------------------------------------
    def status(self):
        self.info("Reading the instances...")
        self.msg(status_text(self.a), TITLE + ": status")

    # -- New instance ---------------------------------------------------------------
    def create(self):
        if not self.a.has("instance", "create"):
            self.msg("This abssctl cannot create instances (upgrade the abssctl package).")
            return
        t = TITLE + ": new instance"
        name = self.ask(t, "Instance name (lowercase letters, digits and '-'), e.g. budget:")
        if not name:
            return
        how = self.choose(t, "How will browsers reach '{}'?".format(name), [
            ("Domain", "A DNS name pointing at this machine (HTTPS on 443)"),
            ("Port", "No DNS: a dedicated HTTPS port on this machine's address"),
        ])
        if how is None:
            return
        https_port = None
        if how == "Domain":
            domain = self.ask(t, "Domain for '{}' (e.g. budget.example.org):".format(name))
        else:
            https_port = self.ask(t, "HTTPS port for '{}' (browsers use https://ADDRESS:PORT/):"
                                  .format(name), "8443")
            if not https_port:
                return
            domain = self.ask(t, "A name for its web server entry (no DNS needed):",
                              "{}.lan".format(name))
        if not domain:
            return
        password = self.secret(t, "Server password for '{}' (empty: set it later in the "
                                  "browser):".format(name))
        if password is None:
            return
        if password:
            again = self.secret(t, "The same password again:")
            if again is None:
                return
            if again != password:
                self.msg("The passwords differ; nothing was created.")
                return
        args = ["--yes", "instance", "create", name, "--domain", domain]
        if https_port:
            args += ["--https-port", https_port]
        if password:
            args.append("--password-stdin")
        where = "port {}".format(https_port) if https_port else domain
        if not self.confirm("Create instance '{}' on {}?".format(name, where)):
            return
        ok, r = self.call(args, stdin=(password + "\n") if password else None,
                          busy="Creating '{}' (the Actual version it needs may be installed "
                               "first)...".format(name), what="Creating '{}'".format(name))
        if not ok:
            return
        text = "Instance '{}' is ready:\n\n  {}\n\nActual {} on port {}.".format(
            r.get("name", name), r.get("url", "?"), r.get("version", "?"), r.get("port", "?"))
        if not r.get("changed", True):
            text = "Instance '{}' already existed:\n\n  {}".format(name, r.get("url", "?"))
        if password and r.get("password_set"):
            text += "\nThe server password is set."
        elif not r.get("password_set"):
            text += "\nNo server password yet: open the URL and set one."
        for w in r.get("warnings") or []:
            text += "\nwarning: {}".format(w)
        self.msg(text)

    # -- Manage an instance ---------------------------------------------------------
    ACTIONS = [
        ("Start", "Start the instance", ("instance", "start")),
        ("Stop", "Stop the instance", ("instance", "stop")),
        ("Restart", "Restart the instance", ("instance", "restart")),
        ("Logs", "The last 50 lines of its log", ("instance", "logs")),
        ("Domain", "Serve it under another domain", ("instance", "set-domain")),
        ("Backup", "Back up now", ("backup", "create")),
        ("Restore", "Restore one of its backups", ("backup", "restore")),
        ("Delete", "Delete the instance (its data stays)", ("instance", "delete")),
    ]

    def manage(self):
        name = self.pick_instance(TITLE + ": manage")
        if not name:
            return
        items = [(tag, desc) for tag, desc, cmd in self.ACTIONS if self.a.has(*cmd)]
        while True:
            tag = self.choose(TITLE + ": " + name, "What to do with '{}'?".format(name), items)
            if tag is None:
                return
            if getattr(self, "do_" + tag.lower())(name) == "gone":
                return

    def _verb(self, name, verb):
        ok, r = self.call(["--yes", "instance", verb, name], busy="{} '{}'...".format(
            verb.capitalize(), name), what="{} '{}'".format(verb.capitalize(), name))
        if not ok:
            return
        if not r.get("changed", True):
            self.msg("'{}': nothing to do (already {}).".format(
                name, "stopped" if verb == "stop" else "running"))
        elif r.get("healthy_after_ms") is not None:
            self.msg("{} '{}': done, healthy after {:.1f} s.".format(
                verb.capitalize(), name, r["healthy_after_ms"] / 1000.0))
        else:
            self.msg("{} '{}': done.".format(verb.capitalize(), name))

    def do_start(self, name):
        self._verb(name, "start")

    def do_stop(self, name):
        if self.confirm("Stop '{}'? Its users cannot sync until it is started again."
                        .format(name)):
            self._verb(name, "stop")

    def do_restart(self, name):
        self._verb(name, "restart")

    def do_logs(self, name):
        ok, r = self.call(["instance", "logs", name, "-n", "50"], what="Reading the log")
        if ok:
            lines = r.get("lines") or []
            self.msg("\n".join(lines) if lines else "(no log lines)", "Log of " + name)

    def do_domain(self, name):
        domain = self.ask(TITLE + ": " + name, "New domain for '{}':".format(name))
        if not domain:
            return
        ok, _ = self.call(["--yes", "instance", "set-domain", name, domain],
                          busy="Changing the domain of '{}'...".format(name),
                          what="Changing the domain")
        if ok:
            self.msg("'{}' is now served at https://{}/".format(name, domain))

    def do_backup(self, name):
        ok, r = self.call(["--yes", "backup", "create", name],
                          busy="Backing up '{}'...".format(name), what="The backup")
        if ok:
            b = (r.get("backups") or [r])[0]
            self.msg("Backup {} of '{}' done ({}).".format(
                b.get("id", "?"), name, _size(b.get("size", "?"))))

    def do_restore(self, name):
        ok, data = self.call(["backup", "list", name], what="Listing the backups")
        if not ok:
            return
        backups = [b for b in data.get("backups") or [] if b.get("id")]
        if not backups:
            self.msg("'{}' has no backups yet.".format(name))
            return
        items = [(b["id"], "{} {} {}".format(_time(b.get("created_at")), b.get("reason", ""),
                                             b.get("status", ""))) for b in reversed(backups)]
        bid = self.choose(TITLE + ": restore", "Which backup of '{}'?".format(name), items)
        if not bid:
            return
        how = self.choose(TITLE + ": restore", "Restore backup {}:".format(bid), [
            ("In place", "Replace the data of '{}' (its current data is backed up first)"
             .format(name)),
            ("As new", "Into a new instance beside '{}'".format(name)),
        ])
        if how == "In place":
            if not self.confirm("Replace the data of '{}' with backup {}? The instance is "
                                "stopped for the swap.".format(name, bid)):
                return
            args = ["--yes", "backup", "restore", bid, "--backup"]
        elif how == "As new":
            new = self.ask(TITLE + ": restore", "Name of the new instance:")
            if not new:
                return
            domain = self.ask(TITLE + ": restore", "Domain of '{}' (empty: abssctl's default):"
                              .format(new))
            if domain is None:
                return
            args = ["--yes", "backup", "restore", bid, "--as", new]
            if domain:
                args += ["--domain", domain]
        else:
            return
        ok, r = self.call(args, busy="Restoring backup {}...".format(bid), what="The restore")
        if ok:
            text = "Backup {} restored {} '{}': https://{}/".format(
                bid, "into" if r.get("mode") == "in-place" else "as new instance",
                r.get("instance", name), r.get("domain", "?"))
            if r.get("pre_restore_backup"):
                text += "\nThe replaced data is in backup {}.".format(r["pre_restore_backup"])
            self.msg(text)

    def do_delete(self, name):
        if not self.confirm("Delete instance '{}'? Its service and web server entry go; its "
                            "data stays on disk.".format(name)):
            return None
        backup = self.confirm("Back up the data of '{}' first?".format(name))
        ok, r = self.call(["--yes", "instance", "delete", name,
                           "--backup" if backup else "--no-backup"],
                          busy="Deleting '{}'...".format(name), what="The delete")
        if not ok:
            return None
        text = "Instance '{}' deleted.".format(name)
        for b in r.get("backups") or []:
            text += "\nIts data was backed up first: {}".format(b)
        self.msg(text)
        return "gone"

    # -- Versions -------------------------------------------------------------------
    def versions(self):
        entries = [
            ("Check", "Check for a newer Actual release", ("version", "check")),
            ("Upgrade", "Upgrade one instance to the newest release", ("upgrade",)),
            ("Upgrade all", "Upgrade every instance, one after the other", ("upgrade",)),
            ("Rollback", "Put an instance back on its pre-upgrade snapshot",
             ("instance", "rollback")),
        ]
        items = [(t, d) for t, d, cmd in entries if self.a.has(*cmd)]
        if not items:
            self.msg("This abssctl has no version commands (upgrade the abssctl package).")
            return
        while True:
            tag = self.choose(TITLE + ": versions", "Actual versions", items)
            if tag is None:
                return
            {"Check": self.v_check, "Upgrade": self.v_upgrade_one,
             "Upgrade all": self.v_upgrade_all, "Rollback": self.v_rollback}[tag]()

    def v_check(self):
        ok, r = self.call(["version", "check"], busy="Asking the npm registry...",
                          what="The update check")
        if not ok:
            return
        text = "Newest release: {}\nInstalled: {}\nCurrent: {}".format(
            r.get("latest", "?"), ", ".join(r.get("installed") or []) or "none",
            r.get("current") or "none")
        text += "\n\nAn update is available." if r.get("update_available") else "\n\nUp to date."
        self.msg(text)

    def _upgrade_report(self, r):
        lines = []
        for o in (r or {}).get("instances") or []:
            line = "{}: {} ({} -> {})".format(o.get("instance"), o.get("status"),
                                              o.get("from") or "?", o.get("to") or "?")
            if o.get("error"):
                line += "\n  " + str(o["error"])
            lines.append(line)
        return "\n".join(lines)

    def _upgrade(self, args, who):
        if not self.confirm("Upgrade {} to the newest Actual release? Each instance is "
                            "stopped, snapshotted, started and checked; a failure rolls it "
                            "back.".format(who)):
            return
        ok, data, err = self.a.run(["--yes"] + args, progress=self._progress(
            "Upgrading {}...".format(who)))
        report = self._upgrade_report(data)
        if not ok:
            self.fail(err, "The upgrade")
            if report:
                self.msg(report, TITLE + ": upgrade result")
            return
        self.msg("Upgraded to Actual {}.\n\n{}".format(data.get("target", "?"), report))

    def v_upgrade_one(self):
        name = self.pick_instance(TITLE + ": upgrade")
        if name:
            self._upgrade(["upgrade", name, "--to", "latest"], "'{}'".format(name))

    def v_upgrade_all(self):
        self._upgrade(["upgrade", "--all"], "every instance")

    def v_rollback(self):
        name = self.pick_instance(TITLE + ": roll back")
        if not name or not self.confirm(
                "Put '{}' back on the data and version of its newest pre-upgrade snapshot? "
                "Its current data is backed up first.".format(name)):
            return
        ok, r = self.call(["--yes", "instance", "rollback", name, "--backup"],
                          busy="Rolling back '{}'...".format(name), what="The rollback")
        if ok:
            self.msg("'{}' is back on Actual {} (backup {}).".format(
                name, r.get("version", "?"), r.get("id", "?")))

    # -- Backup schedules -------------------------------------------------------------
    def schedules(self):
        if not self.a.has("backup", "schedule"):
            self.msg("This abssctl has no backup schedules (upgrade the abssctl package).")
            return
        while True:
            ok, data = self.call(["backup", "schedule", "--list"], what="Reading the schedules")
            if not ok:
                return
            rows = {r["instance"]: r for r in data.get("schedules") or [] if r.get("instance")}
            if not rows:
                self.msg("There are no instances yet (use 'New instance').")
                return
            items = [(n, self._describe(r)) for n, r in rows.items()]
            name = self.choose(TITLE + ": backup schedules", "Choose an instance", items)
            if name is None:
                return
            self._schedule(name, rows[name])

    @staticmethod
    def _describe(row):
        s = row.get("schedule")
        if not s:
            return "off"
        keep = ["{}{}".format(s[k], k[5]) for k in ("keep_last", "keep_daily", "keep_weekly",
                                                  "keep_monthly") if s.get(k)]
        return "{}, keep {}".format(s.get("on_calendar"), "/".join(keep) if keep else "all")

    def _schedule(self, name, row):
        s = row.get("schedule") or {}
        info = "'{}': {}\nnext run: {}\nlast run: {} ({})".format(
            name, self._describe(row), _time(row.get("next_run")), _time(row.get("last_run")),
            row.get("last_result", "-"))
        items = [("Change", "Set when it runs and what it keeps")]
        if row.get("schedule"):
            items.append(("Off", "No more scheduled backups (the backups stay)"))
        tag = self.choose(TITLE + ": " + name, info, items)
        t = TITLE + ": schedule of " + name
        if tag == "Off":
            if self.confirm("Stop the scheduled backups of '{}'?".format(name)):
                ok, _ = self.call(["--yes", "backup", "schedule", name, "--off"],
                                  what="Turning the schedule off")
                if ok:
                    self.msg("No more scheduled backups for '{}'.".format(name))
            return
        if tag != "Change":
            return
        cal = self.ask(t, "When it runs (systemd calendar: daily, '*-*-* 03:00', 'Sun 04:00'):",
                       s.get("on_calendar") or "daily")
        if not cal:
            return
        args = ["--yes", "backup", "schedule", name, "--on-calendar", cal]
        for key, flag, label in (("keep_daily", "--keep-daily", "days"),
                                 ("keep_weekly", "--keep-weekly", "weeks"),
                                 ("keep_monthly", "--keep-monthly", "months")):
            v = self.ask(t, "Keep one backup per day/week/month: how many {} (0: rule off, "
                            "empty: unchanged)?".format(label),
                         str(s[key]) if s.get(key) is not None else "")
            if v is None:
                return
            if v:
                args += [flag, v]
        ok, r = self.call(args, what="Changing the schedule")
        if ok:
            self.msg("Backups of '{}' now run {}.".format(
                name, (r.get("schedule") or {}).get("on_calendar", cal)))
