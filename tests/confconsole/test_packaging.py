"""The .deb ships the whole plugin directory with the modes confconsole needs: the menu
entries executable (confconsole lists only executable *.py), everything else 0644."""

import os
import tomllib
import unittest

import helpers

DEST = "usr/lib/confconsole/plugins.d/50Actual_Budget/"


class Packaging(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(helpers.REPO, "Cargo.toml"), "rb") as f:
            meta = tomllib.load(f)["package"]["metadata"]["deb"]
        self.assets = {src: (dest, mode) for src, dest, mode in meta["assets"]}

    def test_every_plugin_file_is_an_asset_with_its_mode(self):
        files = sorted(f for f in os.listdir(helpers.PLUGIN_DIR)
                       if not f.startswith(".") and f != "__pycache__")
        for f in files:
            src = "confconsole/50Actual_Budget/" + f
            self.assertIn(src, self.assets, f + " is not shipped")
            dest, mode = self.assets[src]
            self.assertEqual(dest, DEST)
            want = "755" if f in helpers.ENTRIES else "644"
            self.assertEqual(mode, want, f)
            tree_mode = os.stat(os.path.join(helpers.PLUGIN_DIR, f)).st_mode & 0o777
            self.assertEqual(oct(tree_mode)[2:], want, f + " in the tree")
        shipped = [s for s in self.assets if s.startswith("confconsole/")]
        self.assertEqual(sorted(shipped), ["confconsole/50Actual_Budget/" + f for f in files])

    def test_entries_have_no_interpreter_line(self):
        # They are imported by confconsole, not run: a #!/usr/bin/python3 line would make
        # lintian require a python3 dependency (the override covers the plain mode).
        for f in helpers.ENTRIES:
            with open(os.path.join(helpers.PLUGIN_DIR, f), encoding="utf-8") as fh:
                self.assertFalse(fh.read(2) == "#!", f)
        with open(os.path.join(helpers.REPO, "debian/abssctl.lintian-overrides")) as fh:
            self.assertIn("executable-not-elf-or-script [" + DEST + "*.py]", fh.read())


if __name__ == "__main__":
    unittest.main()
