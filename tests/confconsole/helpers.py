"""Shared by the plugin tests: where the plugin is, how confconsole loads it, and a PATH
with a fake (or failing, or no) abssctl."""

import importlib.util
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PLUGIN_DIR = os.path.join(REPO, "confconsole", "50Actual_Budget")
ENTRIES = ["10Status.py", "20New_instance.py", "30Manage_instance.py", "40Versions.py",
           "50Backup_schedules.py"]


def confconsole_load(path):
    """Import a plugin file as confconsole's plugin.Plugin does (spec_from_file_location,
    PLUGIN_PATH set before the module runs, exec_module with no error handling)."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    setattr(module, "PLUGIN_PATH", path)
    sys.dont_write_bytecode, saved = True, sys.dont_write_bytecode
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


def executable_entries():
    """The files confconsole would load from the plugin directory (executable *.py)."""
    return sorted(f for f in os.listdir(PLUGIN_DIR)
                  if f.endswith(".py") and os.stat(os.path.join(PLUGIN_DIR, f)).st_mode & 0o111)


def plugin_modules():
    """The plugin's code as the entries load it (abssctl_menus, abssctl_flows,
    abssctl_cli), through 10Status.py's loader."""
    entry = confconsole_load(os.path.join(PLUGIN_DIR, ENTRIES[0]))
    menus = entry._menus()
    return menus, menus.flows_mod, menus.cli_mod


class FakePath:
    """A temp dir with `abssctl` (fake, failing or absent) put first on PATH, the real
    PATH kept for python3 itself; state files (calls, responses) in the same dir."""

    def __init__(self, kind="fake"):
        self.dir = tempfile.mkdtemp(prefix="abssctl-fake-")
        self.bin = os.path.join(self.dir, "bin")
        os.mkdir(self.bin)
        self.root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.root, "var/lib/abssctl"))
        self.saved = {k: os.environ.get(k) for k in
                      ("PATH", "FAKE_ABSSCTL_DIR", "FAKE_ABSSCTL_ROOT")}
        exe = os.path.join(self.bin, "abssctl")
        if kind == "fake":
            with open(os.path.join(HERE, "fake_abssctl.py"), encoding="utf-8") as f:
                body = f.read()
            with open(exe, "w", encoding="utf-8") as f:
                f.write("#!{}\n{}".format(sys.executable, body))
            os.chmod(exe, 0o755)
        elif kind == "failing":
            with open(exe, "w", encoding="utf-8") as f:
                f.write("#!/bin/sh\necho 'not json' ; echo 'boom' >&2 ; exit 1\n")
            os.chmod(exe, 0o755)
        # kind == "missing": no abssctl at all
        if kind == "missing":
            # Only directories without an abssctl: the interpreter is called by path.
            os.environ["PATH"] = self.bin
        else:
            os.environ["PATH"] = self.bin + os.pathsep + (self.saved["PATH"] or "")
        os.environ["FAKE_ABSSCTL_DIR"] = self.dir
        os.environ["FAKE_ABSSCTL_ROOT"] = self.root

    def respond(self, match, rc=0, stdout=None, stderr=""):
        rules = self._load("responses.json", [])
        rules.append({"match": match, "rc": rc, "stdout": stdout, "stderr": stderr})
        self._save("responses.json", rules)

    def fail(self, match, message, hint=None, rc=2, kind="validation"):
        """`match` answers as abssctl does on a failure: the error object and stderr."""
        err = "error: {}\n".format(message) + ("hint: {}\n".format(hint) if hint else "")
        self.respond(match, rc, {"error": {"kind": kind, "exit_code": rc, "message": message,
                                           "hint": hint}}, err)

    has_missing = False

    def missing(self, *command):
        self.has_missing = True
        m = self._load("missing.json", [])
        m.append(list(command))
        self._save("missing.json", m)

    def calls(self):
        try:
            with open(os.path.join(self.dir, "calls.jsonl"), encoding="utf-8") as f:
                return [json.loads(line) for line in f]
        except OSError:
            return []

    def argvs(self):
        return [c["argv"] for c in self.calls()]

    def probes(self):
        try:
            with open(os.path.join(self.dir, "probes.jsonl"), encoding="utf-8") as f:
                return [json.loads(line) for line in f]
        except OSError:
            return []

    def _load(self, name, default):
        try:
            with open(os.path.join(self.dir, name), encoding="utf-8") as f:
                return json.load(f)
        except OSError:
            return default

    def _save(self, name, value):
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as f:
            json.dump(value, f)

    def close(self):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(self.dir, ignore_errors=True)
