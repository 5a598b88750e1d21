"""The console of the real-dialog walk (dialog_console.py, run_dialog.py) on the host, with
a stub in place of pythondialog: it must pass the boxes on as confconsole's Console does
(text first with a leading newline, the persistent Select/Back options) and return what
pythondialog returns; run_dialog.py must label and load the entries as confconsole does.
The walk itself, with the real dialog under tmux, is in the container tier (scenario 74)."""

import sys
import types
import unittest

import helpers


class StubDialog:
    """pythondialog's Dialog as far as the console uses it: records each box."""

    instances = []

    def __init__(self, dialog="dialog"):
        self.program = dialog
        self.persistent = []
        self.boxes = []
        StubDialog.instances.append(self)

    def add_persistent_args(self, args):
        self.persistent.extend(args)

    def __getattr__(self, name):
        if name not in ("menu", "inputbox", "passwordbox", "msgbox", "yesno", "infobox", "form"):
            raise AttributeError(name)

        def box(text, *args, **kws):
            self.boxes.append((name, text, args, kws))
            if name == "menu":
                return "ok", kws["choices"][1][0]
            if name in ("inputbox", "passwordbox"):
                return "cancel", ""
            return "ok"
        return box


def load_console():
    stub = types.ModuleType("dialog")
    stub.Dialog = StubDialog
    saved = sys.modules.get("dialog")
    sys.modules["dialog"] = stub
    sys.modules.pop("dialog_console", None)
    try:
        import dialog_console
    finally:
        if saved is None:
            sys.modules.pop("dialog", None)
        else:
            sys.modules["dialog"] = saved
    return dialog_console


class DialogConsoleTest(unittest.TestCase):
    def setUp(self):
        self.con = load_console().DialogConsole()
        self.d = StubDialog.instances[-1]

    def test_the_options_confconsole_sets_on_every_box(self):
        self.assertEqual(self.d.program, "dialog")
        for opt in ("--no-collapse", "--colors"):
            self.assertIn(opt, self.d.persistent)
        p = self.d.persistent
        self.assertEqual(p[p.index("--ok-label") + 1], "Select")
        self.assertEqual(p[p.index("--cancel-label") + 1], "Back")
        self.assertIn("--backtitle", p)

    def test_menu_returns_code_and_tag(self):
        got = self.con.menu("T", "pick", [("A", "first"), ("B", "second")])
        self.assertEqual(got, ("ok", "B"))
        name, text, args, kws = self.d.boxes[-1]
        self.assertEqual((name, text, args), ("menu", "\npick", (25, 65)))
        self.assertEqual(kws["menu_height"], 3)
        self.assertEqual(kws["title"], "T")

    def test_the_plugins_passwordbox_and_sized_infobox_go_through_wrapper(self):
        got = self.con._wrapper("passwordbox", "pw?", 12, 65, title="T", insecure=True)
        self.assertEqual(got, ("cancel", ""))
        self.assertEqual(self.d.boxes[-1], ("passwordbox", "\npw?", (12, 65),
                                            {"title": "T", "insecure": True}))
        self.assertEqual(self.con._wrapper("infobox", "busy", 9, 65), "ok")
        with self.assertRaises(ValueError):
            self.con._wrapper("gauge_start", "x")

    def test_inputbox_yesno_msgbox(self):
        self.assertEqual(self.con.inputbox("T", "name?", "x"), ("cancel", ""))
        self.assertEqual(self.d.boxes[-1][3]["init"], "x")
        self.assertEqual(self.con.yesno("sure?", autosize=True), "ok")
        self.assertEqual(self.d.boxes[-1][1:3], ("\nsure?\n ", (0, 0)))
        self.assertEqual(self.con.msgbox("T", "done"), "ok")
        self.assertEqual(self.d.boxes[-1][2], (25, 65))

    def test_run_dialog_labels_and_loads_the_entries_as_confconsole(self):
        import run_dialog  # its dialog_console is the one setUp loaded with the stub
        self.assertEqual(run_dialog.label(helpers.PLUGIN_DIR), "Actual budget")
        entries = run_dialog.load_entries(helpers.PLUGIN_DIR, self.con)
        self.assertEqual([e[0] for e in entries], ["Status", "New instance", "Manage instance",
                                                   "Versions", "Backup schedules"])
        for _, doc, module in entries:
            self.assertIs(module.console, self.con)
            self.assertTrue(module.interactive)
            self.assertTrue(doc and doc != "None")


if __name__ == "__main__":
    unittest.main()
