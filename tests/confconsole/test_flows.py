"""Every menu path of the plugin, driven by the console double against the fake abssctl:
what abssctl is asked (argv, stdin) and what the user is shown."""

import json
import os
import unittest

import helpers
from console_double import Cancel, Menu, No, Password, ScriptedConsole, Text, Yes

MENUS, FLOWS, CLI = helpers.plugin_modules()

#: The command probes (`abssctl X --help`) cost a process each: one cache for the tests
#: whose fake abssctl has every command (a test that removes one gets its own).
FULL_CLI = CLI.Abssctl()


class FlowCase(unittest.TestCase):
    def setUp(self):
        self.fake = helpers.FakePath("fake")
        self.addCleanup(self.fake.close)
        os.environ["CONFCONSOLE_ACTUAL_RAISE"] = "1"
        self.addCleanup(os.environ.pop, "CONFCONSOLE_ACTUAL_RAISE", None)

    def drive(self, menu, *answers):
        """Run the menu `menu` with the answers; every answer must be used."""
        con = ScriptedConsole(answers)
        cli = CLI.Abssctl() if self.fake.has_missing else FULL_CLI
        MENUS.entry(menu, {"console": con, "interactive": True}, cli=cli)
        self.assertEqual(con.unused(), [], "answers the flow never asked for")
        return con

    def mutations(self):
        """The calls that change something (they carry --yes)."""
        return [c for c in self.fake.calls() if "--yes" in c["argv"]]


class Status(FlowCase):
    def test_status_shows_instances_backups_updates_and_nothing_absent(self):
        self.fake.missing("doctor")
        con = self.drive("status")
        text = con.boxes()[-1]
        self.assertIn("budget: https://budget.example.org/", text)
        self.assertIn("active/running, health up, Actual 26.9.0", text)
        self.assertIn("last backup: 2026-11-27 03:00 UTC (scheduled, present)", text)
        self.assertIn("update available: 26.10.0", text)
        self.assertIn("family: https://family.example.org/", text)
        self.assertNotIn("Update check", text)  # no updates.json
        self.assertNotIn("Doctor", text)  # this abssctl has no doctor
        self.assertEqual(self.fake.argvs()[0], ["--json", "instance", "list"])

    def test_status_adds_the_update_file_and_the_doctor_when_they_exist(self):
        with open(os.path.join(self.fake.root, "var/lib/abssctl/updates.json"), "w") as f:
            json.dump({"checked_at": "2026-11-27T05:00:00Z", "latest": "26.10.0",
                       "installed": ["26.9.0"], "update_available": True,
                       "error": "registry unreachable"}, f)
        self.fake.respond(["doctor"], 3, {"probes": [
            {"id": "nginx", "status": "green", "message": "nginx -t ok"},
            {"id": "tls", "status": "yellow", "message": "certificate expires in 20 days",
             "remediation": "renew it"}]})
        text = self.drive("status").boxes()[-1]
        self.assertIn("Update check (2026-11-27 05:00 UTC): newest release 26.10.0", text)
        self.assertIn("last check failed: registry unreachable", text)
        self.assertIn("Doctor: 1 green, 1 yellow", text)
        self.assertIn("[yellow] certificate expires in 20 days", text)
        self.assertIn("fix: renew it", text)

    def test_a_failed_list_shows_message_and_hint(self):
        self.fake.fail(["instance", "list"], "the registry is unreadable", "fix it by hand", 3)
        text = self.drive("status").boxes()[-1]
        self.assertIn("the registry is unreadable", text)
        self.assertIn("Hint: fix it by hand", text)


class NewInstance(FlowCase):
    def test_create_with_a_domain_passes_the_password_on_stdin_only(self):
        con = self.drive("create", Text("new"), Menu("Domain"), Text("new.example.org"),
                         Password("s3cret pw"), Password("s3cret pw"), Yes)
        create = self.mutations()
        self.assertEqual(create[0]["argv"], ["--json", "--yes", "instance", "create", "new",
                                             "--domain", "new.example.org",
                                             "--password-stdin"])
        self.assertEqual(create[0]["stdin"], "s3cret pw\n")
        self.assertNotIn("s3cret pw", json.dumps([c["argv"] for c in self.fake.calls()]))
        self.assertTrue(any("Creating 'new'" in t for t in con.boxes("infobox")))
        self.assertIn("https://new.example.org/", con.boxes()[-1])
        self.assertIn("password is set", con.boxes()[-1])

    def test_create_on_a_dedicated_https_port_without_password(self):
        self.drive("create", Text("lan"), Menu("Port"), Text("8443"), Text(None),
                   Password(""), Yes)
        call = self.mutations()[0]
        self.assertEqual(call["argv"], ["--json", "--yes", "instance", "create", "lan",
                                        "--domain", "lan.lan", "--https-port", "8443"])
        self.assertEqual(call["stdin"], "")

    def test_different_passwords_create_nothing(self):
        con = self.drive("create", Text("new"), Menu("Domain"), Text("new.example.org"),
                         Password("a"), Password("b"))
        self.assertEqual(self.mutations(), [])
        self.assertIn("passwords differ", con.boxes()[-1])

    def test_cancel_at_the_confirmation_creates_nothing(self):
        self.drive("create", Text("new"), Menu("Domain"), Text("new.example.org"),
                   Password(""), No)
        self.assertEqual(self.mutations(), [])

    def test_a_refused_create_shows_why(self):
        self.fake.fail(["instance", "create"], "invalid domain 'x'", "give a fully qualified name")
        con = self.drive("create", Text("new"), Menu("Domain"), Text("x"), Password(""), Yes)
        self.assertIn("invalid domain 'x'", con.boxes()[-1])
        self.assertIn("Hint: give a fully qualified name", con.boxes()[-1])


class Manage(FlowCase):
    def manage(self, *answers):
        return self.drive("manage", Menu("budget"), *answers)

    def test_the_actions_offered(self):
        con = self.manage(Cancel)
        menu = [c for c in con.calls if c[0] == "menu"][-1][3]
        self.assertEqual([t for t, _ in menu], ["Start", "Stop", "Restart", "Logs", "Domain",
                                                "Backup", "Restore", "Delete"])

    def test_a_command_this_abssctl_lacks_is_not_offered(self):
        self.fake.missing("instance", "set-domain")
        con = self.manage(Cancel)
        menu = [c for c in con.calls if c[0] == "menu"][-1][3]
        self.assertNotIn("Domain", [t for t, _ in menu])

    def test_probes_are_cached(self):
        cli = CLI.Abssctl()
        for _ in range(3):
            con = ScriptedConsole([Menu("budget"), Cancel])
            MENUS.entry("manage", {"console": con}, cli=cli)
        probes = self.fake.probes()
        self.assertEqual(len(probes), len(set(map(tuple, probes))), probes)

    def test_start_stop_restart(self):
        con = self.manage(Menu("Start"), Menu("Stop"), Yes, Menu("Restart"), Cancel)
        self.assertEqual([c["argv"][2:] for c in self.mutations()],
                         [["instance", "start", "budget"], ["instance", "stop", "budget"],
                          ["instance", "restart", "budget"]])
        self.assertIn("healthy after 1.5 s", con.boxes()[0])

    def test_a_failure_is_shown_and_the_menu_comes_back(self):
        self.fake.fail(["instance", "start"], "systemd refused the start", rc=4, kind="provider")
        con = self.manage(Menu("Start"), Cancel)
        self.assertIn("systemd refused the start", con.boxes()[-1])
        self.assertEqual([c[0] for c in con.calls][-2:], ["msgbox", "menu"])

    def test_logs(self):
        con = self.manage(Menu("Logs"), Cancel)
        self.assertIn(["--json", "instance", "logs", "budget", "-n", "50"], self.fake.argvs())
        self.assertIn("listening on 5000", con.boxes()[-1])

    def test_change_domain(self):
        self.manage(Menu("Domain"), Text("money.example.org"), Cancel)
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["instance", "set-domain", "budget", "money.example.org"])

    def test_backup_now(self):
        con = self.manage(Menu("Backup"), Cancel)
        self.assertEqual(self.mutations()[0]["argv"][2:], ["backup", "create", "budget"])
        self.assertIn("Backup budget-20261128T100000Z of 'budget' done (4.1 KB)", con.boxes()[-1])

    def test_restore_in_place_backs_up_first(self):
        con = self.manage(Menu("Restore"), Menu("budget-20261126T080000Z"), Menu("In place"),
                          Yes, Cancel)
        self.assertIn(["--json", "backup", "list", "budget"], self.fake.argvs())
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["backup", "restore", "budget-20261126T080000Z", "--backup"])
        self.assertIn("budget-20261128T100500Z", con.boxes()[-1])
        # Newest first in the list.
        menus = [c[3] for c in con.calls if c[0] == "menu"]
        self.assertEqual(menus[2][0][0], "budget-20261127T030000Z")

    def test_restore_as_a_new_instance(self):
        self.manage(Menu("Restore"), Menu("budget-20261126T080000Z"), Menu("As new"),
                    Text("copy"), Text("copy.example.org"), Cancel)
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["backup", "restore", "budget-20261126T080000Z", "--as", "copy",
                          "--domain", "copy.example.org"])

    def test_delete_asks_about_the_backup(self):
        self.manage(Menu("Delete"), Yes, Yes)
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["instance", "delete", "budget", "--backup"])

    def test_delete_without_backup_and_back_to_the_list(self):
        con = self.manage(Menu("Delete"), Yes, No)
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["instance", "delete", "budget", "--no-backup"])
        self.assertEqual(con.calls[-1][0], "msgbox")  # no action menu for a deleted instance

    def test_delete_not_confirmed_deletes_nothing(self):
        self.manage(Menu("Delete"), No, Cancel)
        self.assertEqual(self.mutations(), [])


class Versions(FlowCase):
    def test_check(self):
        con = self.drive("versions", Menu("Check"), Cancel)
        self.assertIn(["--json", "version", "check"], self.fake.argvs())
        self.assertIn("Newest release: 26.10.0", con.boxes()[-1])
        self.assertIn("An update is available", con.boxes()[-1])

    def test_upgrade_one_and_all(self):
        self.drive("versions", Menu("Upgrade"), Menu("family"), Yes, Menu("Upgrade all"), Yes,
                   Cancel)
        self.assertEqual([c["argv"][2:] for c in self.mutations()],
                         [["upgrade", "family", "--to", "latest"], ["upgrade", "--all"]])

    def test_a_rolled_back_upgrade_shows_the_error_and_each_outcome(self):
        self.fake.respond(["upgrade"], 4, {"target": "26.10.0", "ok": False, "instances": [
            {"instance": "budget", "status": "rolled-back", "from": "26.9.0", "to": "26.10.0",
             "error": "health gate timed out"}]},
            "error: the upgrade of 'budget' to Actual 26.10.0 failed (rolled back)\n")
        con = self.drive("versions", Menu("Upgrade all"), Yes, Cancel)
        self.assertIn("failed (rolled back)", con.boxes()[-2])
        self.assertIn("budget: rolled-back (26.9.0 -> 26.10.0)", con.boxes()[-1])
        self.assertIn("health gate timed out", con.boxes()[-1])

    def test_rollback(self):
        con = self.drive("versions", Menu("Rollback"), Menu("budget"), Yes, Cancel)
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["instance", "rollback", "budget", "--backup"])
        self.assertIn("back on Actual 26.8.0", con.boxes()[-1])

    def test_without_upgrade_only_what_exists_is_offered(self):
        self.fake.missing("upgrade")
        con = self.drive("versions", Cancel)
        menu = [c for c in con.calls if c[0] == "menu"][-1][3]
        self.assertEqual([t for t, _ in menu], ["Check", "Rollback"])


class Schedules(FlowCase):
    def test_list_and_change(self):
        con = self.drive("schedules", Menu("budget"), Menu("Change"), Text("*-*-* 03:00"),
                         Text("14"), Text(None), Text(""), Cancel)
        self.assertIn(["--json", "backup", "schedule", "--list"], self.fake.argvs())
        menus = [c for c in con.calls if c[0] == "menu"]
        self.assertEqual(menus[0][3], [("budget", "daily, keep 7d/4w/6m"), ("family", "off")])
        self.assertEqual(self.mutations()[0]["argv"][2:],
                         ["backup", "schedule", "budget", "--on-calendar", "*-*-* 03:00",
                          "--keep-daily", "14", "--keep-weekly", "4"])

    def test_turn_off(self):
        self.drive("schedules", Menu("budget"), Menu("Off"), Yes, Cancel)
        self.assertEqual(self.mutations()[0]["argv"][2:], ["backup", "schedule", "budget",
                                                           "--off"])

    def test_an_instance_without_schedule_offers_no_off(self):
        con = self.drive("schedules", Menu("family"), Cancel, Cancel)
        menus = [c for c in con.calls if c[0] == "menu"]
        self.assertEqual([t for t, _ in menus[1][3]], ["Change"])

    def test_a_refused_calendar_is_shown(self):
        self.fake.fail(["backup", "schedule", "budget"], "'often' is not a calendar expression",
                       "see systemd.time(7)")
        con = self.drive("schedules", Menu("budget"), Menu("Change"), Text("often"),
                         Text(None), Text(None), Text(None), Cancel)
        self.assertIn("'often' is not a calendar expression", con.boxes()[-1])


class NonInteractive(FlowCase):
    def test_nointeractive_never_asks(self):
        import io
        for menu in ("status", "create", "manage", "versions", "schedules"):
            buf = io.StringIO()
            MENUS.entry(menu, {"interactive": False}, cli=CLI.Abssctl(), out=buf)
            self.assertTrue(buf.getvalue())
        self.assertEqual(self.mutations(), [])


if __name__ == "__main__":
    unittest.main()
