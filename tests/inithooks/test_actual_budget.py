"""inithooks/bin/actual-budget.py against a double of libinithooks and a fake abssctl.

The double is a package directory put first on sys.path: dialog_wrapper.Dialog with the
methods the helper may call (get_input, get_password, error: the real signatures) that
answer from a script and record every call, and inithooks_cache with read/write over a
dict. The fake abssctl is a script first on PATH that records its argv and stdin.

Run: python3 -m unittest discover -s tests/inithooks -p 'test_*.py'
"""

import importlib.util
import json
import os
import sys
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "..", "..", "inithooks", "bin", "actual-budget.py")

DIALOG_WRAPPER = '''
calls = []
answers = {"get_input": [], "get_password": []}


class Dialog:
    def __init__(self, title, width=60, height=20):
        calls.append(("Dialog", title))

    def get_input(self, title, text, init=""):
        calls.append(("get_input", title, init))
        return answers["get_input"].pop(0)

    def get_password(self, title, text, pass_req=8, min_complexity=3, blacklist=None):
        calls.append(("get_password", title))
        return answers["get_password"].pop(0)

    def error(self, text):
        calls.append(("error", text))
        return "ok"
'''

INITHOOKS_CACHE = '''
store = {}


def read(key, fallback=""):
    return store.get(key, fallback)


def write(key, value):
    store[key] = value
'''

FAKE_ABSSCTL = '''#!/usr/bin/python3
import json, os, sys
log = os.environ["FAKE_ABSSCTL_LOG"]
calls = json.load(open(log)) if os.path.exists(log) else []
calls.append({"argv": sys.argv[1:], "stdin": sys.stdin.read(),
              "env_has_app_pass": "APP_PASS" in os.environ})
json.dump(calls, open(log, "w"))
codes = os.environ.get("FAKE_ABSSCTL_RC", "0").split(",")
rc = int(codes[min(len(calls), len(codes)) - 1])
if rc:
    sys.stderr.write("error: invalid domain\\n")
sys.exit(rc)
'''


class ActualBudgetHook(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = self.tmp.name
        pkg = os.path.join(root, "lib", "libinithooks")
        os.makedirs(pkg)
        for name, text in [
            ("__init__.py", ""),
            ("dialog_wrapper.py", DIALOG_WRAPPER),
            ("inithooks_cache.py", INITHOOKS_CACHE),
        ]:
            with open(os.path.join(pkg, name), "w") as f:
                f.write(textwrap.dedent(text))
        bindir = os.path.join(root, "bin")
        os.makedirs(bindir)
        fake = os.path.join(bindir, "abssctl")
        with open(fake, "w") as f:
            f.write(FAKE_ABSSCTL)
        os.chmod(fake, 0o755)
        self.log = os.path.join(root, "calls.json")
        self.env = {
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "FAKE_ABSSCTL_LOG": self.log,
        }
        sys.path.insert(0, os.path.join(root, "lib"))
        for m in ("libinithooks", "libinithooks.dialog_wrapper", "libinithooks.inithooks_cache"):
            sys.modules.pop(m, None)
        import libinithooks.dialog_wrapper as dw
        import libinithooks.inithooks_cache as cache

        self.dw, self.cache = dw, cache
        spec = importlib.util.spec_from_file_location("actual_budget", HELPER)
        self.hook = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.hook)
        # The fake abssctl is found through the PATH given to the child only.
        self._path = os.environ["PATH"]
        os.environ["PATH"] = self.env["PATH"]

    def tearDown(self):
        os.environ["PATH"] = self._path
        sys.path.remove(os.path.join(self.tmp.name, "lib"))
        for m in ("libinithooks", "libinithooks.dialog_wrapper", "libinithooks.inithooks_cache"):
            sys.modules.pop(m, None)
        self.tmp.cleanup()

    def calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return json.load(f)

    def run_hook(self, fqdn="nodejs", **env):
        return self.hook.main(dict(self.env, **env), fqdn=lambda: fqdn)

    def test_preseeded_runs_non_interactively_with_the_password_on_stdin(self):
        rc = self.run_hook(APP_DOMAIN="budget.example.org", APP_PASS="Pa55-word!")
        self.assertEqual(rc, 0)
        [call] = self.calls()
        self.assertEqual(
            call["argv"],
            ["--yes", "firstboot", "--domain", "budget.example.org", "--password-stdin"],
        )
        self.assertEqual(call["stdin"], "Pa55-word!\n")
        self.assertFalse(any("Pa55-word!" in a for a in call["argv"]))
        self.assertFalse(call["env_has_app_pass"])
        self.assertEqual(self.dw.calls, [], "no dialog when everything is preseeded")
        self.assertEqual(self.cache.store, {"APP_DOMAIN": "budget.example.org"})

    def test_empty_values_are_asked_for(self):
        self.dw.answers["get_input"] = ["asked.example.org"]
        self.dw.answers["get_password"] = ["Asked-Pa55"]
        rc = self.run_hook(APP_DOMAIN="", APP_PASS="")
        self.assertEqual(rc, 0)
        kinds = [c[0] for c in self.dw.calls]
        self.assertEqual(kinds, ["Dialog", "get_input", "get_password"])
        # The input box is prefilled with the default domain.
        self.assertEqual(self.dw.calls[1][2], "budget.local")
        [call] = self.calls()
        self.assertEqual(call["argv"][3], "asked.example.org")
        self.assertEqual(call["stdin"], "Asked-Pa55\n")
        self.assertEqual(self.cache.store["APP_DOMAIN"], "asked.example.org")

    def test_default_is_the_fqdn_or_budget_local(self):
        self.run_hook(APP_DOMAIN="DEFAULT", APP_PASS="Pa55-word!", fqdn="box.example.org")
        self.run_hook(APP_DOMAIN="DEFAULT", APP_PASS="Pa55-word!", fqdn="nodejs")
        self.run_hook(APP_DOMAIN="DEFAULT", APP_PASS="Pa55-word!", fqdn="nodejs.localdomain")
        domains = [c["argv"][3] for c in self.calls()]
        self.assertEqual(domains, ["box.example.org", "budget.local", "budget.local"])
        self.assertEqual(self.cache.store["APP_DOMAIN"], "budget.local")
        self.assertEqual(self.dw.calls, [])

    def test_a_refused_domain_is_asked_again_interactively_only(self):
        # Preseeded: the failure is the hook's result (inithooks logs it, goes on).
        rc = self.run_hook(
            APP_DOMAIN="bad domain", APP_PASS="Pa55-word!", FAKE_ABSSCTL_RC="2"
        )
        self.assertEqual(rc, 2)
        self.assertEqual(len(self.calls()), 1)
        self.assertEqual(self.cache.store, {}, "nothing cached for a failed setup")
        # Asked: the error is shown and the domain asked again.
        os.remove(self.log)
        self.dw.answers["get_input"] = ["good.example.org"]
        self.dw.answers["get_password"] = ["Pa55-word!"]
        rc = self.run_hook(APP_DOMAIN="bad domain", APP_PASS="", FAKE_ABSSCTL_RC="2,0")
        self.assertEqual(rc, 0)
        self.assertEqual([c["argv"][3] for c in self.calls()], ["bad domain", "good.example.org"])
        self.assertIn(("error", "error: invalid domain"), self.dw.calls)
        self.assertEqual(self.cache.store["APP_DOMAIN"], "good.example.org")

    def test_no_abssctl_is_exit_3_not_a_traceback(self):
        os.environ["PATH"] = self.tmp.name  # no abssctl there
        rc = self.hook.main(dict(self.env, PATH=self.tmp.name, APP_DOMAIN="a.example.org",
                                 APP_PASS="Pa55-word!"), fqdn=lambda: "x")
        self.assertEqual(rc, 3)
        self.assertEqual(self.cache.store, {})

    def test_module_imports_without_libinithooks(self):
        # What makes it testable: libinithooks is imported inside main only.
        with open(HELPER) as f:
            top = [l for l in f if l.startswith(("import ", "from "))]
        self.assertFalse([l for l in top if "libinithooks" in l], top)



class FirstbootHook(unittest.TestCase):
    """firstboot.d/40actual-budget: sources the defaults and the preseed file, hands
    APP_DOMAIN and APP_PASS to the helper in its environment (not on its command line)."""

    def test_preseed_reaches_the_helper_environment(self):
        hook = os.path.join(HERE, "..", "..", "inithooks", "firstboot.d", "40actual-budget")
        with tempfile.TemporaryDirectory() as root, open(hook) as f:
            text = f.read()
            defaults = os.path.join(root, "default-inithooks")
            conf = os.path.join(root, "inithooks.conf")
            os.makedirs(os.path.join(root, "bin"))
            with open(defaults, "w") as d:
                d.write(f"INITHOOKS_CONF={conf}\nINITHOOKS_PATH={root}\n")
            # Not exported in the file: the hook must export them itself.
            with open(conf, "w") as c:
                c.write("APP_DOMAIN=DEFAULT\nAPP_PASS='Pa55 word!'\n")
            helper = os.path.join(root, "bin", "actual-budget.py")
            with open(helper, "w") as h:
                h.write(
                    "#!/bin/sh\n"
                    f'printf "%s|%s|%s" "$APP_DOMAIN" "$APP_PASS" "$#" > {root}/seen\n'
                )
            os.chmod(helper, 0o755)
            self.assertIn(". /etc/default/inithooks", text)
            copy = os.path.join(root, "40actual-budget")
            with open(copy, "w") as c:
                c.write(text.replace("/etc/default/inithooks", defaults))
            import subprocess

            subprocess.run(["bash", copy], check=True, env={"PATH": os.environ["PATH"]})
            with open(os.path.join(root, "seen")) as f:
                self.assertEqual(f.read(), "DEFAULT|Pa55 word!|0")


if __name__ == "__main__":
    unittest.main()
