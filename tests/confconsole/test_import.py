"""The two ways a plugin breaks confconsole for everyone: an import that fails (confconsole
imports every plugin at start-up without error handling) and a crash of the run.
Loading and running the entries with abssctl missing or always failing must never raise,
also in `--nointeractive` mode (no `console` injected)."""

import io
import os
import sys
import unittest
from contextlib import redirect_stdout

import helpers
from console_double import Cancel, ScriptedConsole


def _reset_plugin_cache():
    """Each test starts as a fresh confconsole process would (no loaded plugin code)."""
    for k in [k for k in sys.modules if k.startswith("abssctl_confconsole_")]:
        del sys.modules[k]


class ImportSafety(unittest.TestCase):
    def setUp(self):
        _reset_plugin_cache()

    def tearDown(self):
        _reset_plugin_cache()

    def test_the_entries_are_what_confconsole_loads(self):
        self.assertEqual(helpers.executable_entries(), helpers.ENTRIES)
        self.assertTrue(os.path.isfile(os.path.join(helpers.PLUGIN_DIR, "description")))
        for lib in ("abssctl_cli.py", "abssctl_flows.py", "abssctl_menus.py"):
            mode = os.stat(os.path.join(helpers.PLUGIN_DIR, lib)).st_mode
            self.assertFalse(mode & 0o111, lib + " must not be executable (not a menu entry)")

    def _load_all(self):
        mods = []
        for f in helpers.ENTRIES:
            m = helpers.confconsole_load(os.path.join(helpers.PLUGIN_DIR, f))
            self.assertTrue(callable(getattr(m, "run", None)), f)
            self.assertTrue((m.__doc__ or "").strip(), f + " needs a docstring (its menu text)")
            self.assertFalse(hasattr(m, "doOnce"), "doOnce runs at start-up: keep it out")
            mods.append(m)
        return mods

    def _run_everything(self, kind):
        fake = helpers.FakePath(kind)
        self.addCleanup(fake.close)
        mods = self._load_all()
        for m in mods:
            # --nointeractive: confconsole injects interactive=False and no console.
            m.interactive = False
            buf = io.StringIO()
            with redirect_stdout(buf):
                self.assertIsNone(m.run())
            self.assertTrue(buf.getvalue().strip(), m.__name__ + " printed nothing")
            # Interactive, every question answered "Back".
            m.interactive = True
            m.console = ScriptedConsole([Cancel] * 5)
            self.assertIsNone(m.run())
        return mods

    def test_import_and_run_with_abssctl_missing(self):
        mods = self._run_everything("missing")
        shown = mods[0].console.shown()
        self.assertIn("abssctl is not installed", shown)

    def test_import_and_run_with_an_abssctl_that_always_fails(self):
        mods = self._run_everything("failing")
        self.assertIn("exit code 1", mods[0].console.shown())

    def test_nointeractive_status_prints_the_instances(self):
        fake = helpers.FakePath("fake")
        self.addCleanup(fake.close)
        m = helpers.confconsole_load(os.path.join(helpers.PLUGIN_DIR, helpers.ENTRIES[0]))
        m.interactive = False  # and no console at all
        buf = io.StringIO()
        with redirect_stdout(buf):
            m.run()
        self.assertIn("https://budget.example.org/", buf.getvalue())

    def test_a_broken_plugin_file_is_reported_not_raised(self):
        # The code beside the entry cannot be read: the entry says so in a box.
        m = helpers.confconsole_load(os.path.join(helpers.PLUGIN_DIR, helpers.ENTRIES[1]))
        m.PLUGIN_PATH = os.path.join(helpers.HERE, "no-such-dir", "20New_instance.py")
        m.console = ScriptedConsole()
        self.assertIsNone(m.run())
        self.assertIn("could not load", m.console.shown())

    def test_the_modules_write_no_bytecode_into_the_plugin_dir(self):
        fake = helpers.FakePath("fake")
        self.addCleanup(fake.close)
        helpers.plugin_modules()
        self.assertFalse(os.path.exists(os.path.join(helpers.PLUGIN_DIR, "__pycache__")))


if __name__ == "__main__":
    unittest.main()
