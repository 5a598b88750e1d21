"""The abssctl-calling layer of the Actual Budget confconsole plugin.

Not a menu entry (not executable, so confconsole does not load it): the menu modules
load it inside run(). It only runs `abssctl --json ...` and turns every outcome into
(ok, data, error), so the menus never parse human output and never see an exception
from a missing or broken abssctl.
"""

import json
import os
import shutil
import subprocess
import time

#: The hint shown when the abssctl binary is not there at all.
MISSING_HINT = "install the abssctl package (apt install ./abssctl_*.deb)"


def _error(message, hint=None, kind=None, exit_code=None):
    return {"message": message, "hint": hint, "kind": kind, "exit_code": exit_code}


def _from_stderr(stderr, rc, args):
    """The failure abssctl described on stderr (`error: ...` / `hint: ...` lines), for
    a failed command whose stdout is a report rather than an error object (an upgrade
    that rolled back), or one that printed no JSON at all."""
    message = None
    hint = None
    for line in (stderr or "").splitlines():
        if line.startswith("error: ") and message is None:
            message = line[len("error: "):].strip()
        elif line.startswith("hint: ") and hint is None:
            hint = line[len("hint: "):].strip()
    if message is None:
        tail = [ln for ln in (stderr or "").splitlines() if ln.strip()][-3:]
        message = "abssctl {} failed (exit code {})".format(" ".join(args[:2]), rc)
        if tail:
            message += ": " + " / ".join(tail)
    return _error(message, hint, exit_code=rc)


class Abssctl:
    """Runs abssctl with --json; `run` never raises.

    `exe` is the command (looked up on PATH), `timeout` the seconds a command may take
    (None: no limit; a version install can take minutes)."""

    def __init__(self, exe="abssctl", timeout=None):
        self.exe = exe
        self.timeout = timeout
        self._probes = {}

    def path(self):
        """Where the binary is, or None."""
        return shutil.which(self.exe)

    def _env(self):
        env = dict(os.environ)
        # Plain text on stderr: the messages are shown in dialog boxes.
        env["NO_COLOR"] = "1"
        return env

    def run(self, args, stdin=None, progress=None):
        """Run `abssctl --json ARGS`. `stdin` is text for its standard input (None: an
        empty one, so abssctl never finds the console's terminal and never prompts);
        `progress(seconds)` is called about once a second while it runs.

        Returns (ok, data, error): ok is True on exit 0; data is the parsed JSON report
        (also on some failures, e.g. an upgrade that rolled back); error is None or a
        dict with message, hint, kind and exit_code."""
        argv = [self.exe, "--json"] + [str(a) for a in args]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self._env(),
            )
        except FileNotFoundError:
            return False, None, _error("abssctl is not installed (not found on PATH)", MISSING_HINT)
        except OSError as e:
            return False, None, _error("abssctl could not be started: {}".format(e), MISSING_HINT)
        started = time.monotonic()
        data_in = stdin if stdin is not None else ""
        out, err = "", ""
        while True:
            try:
                out, err = proc.communicate(input=data_in, timeout=1)
                break
            except subprocess.TimeoutExpired:
                # The input went in with the first call; later calls only wait.
                data_in = None
                elapsed = time.monotonic() - started
                if self.timeout is not None and elapsed > self.timeout:
                    proc.kill()
                    proc.communicate()
                    return False, None, _error(
                        "abssctl {} took longer than {} s and was stopped".format(
                            " ".join(argv[2:4]), self.timeout),
                        "run it in a shell to see where it waits",
                    )
                if progress is not None:
                    try:
                        progress(int(elapsed))
                    except Exception:
                        pass
            except OSError as e:
                proc.kill()
                proc.communicate()
                return False, None, _error("talking to abssctl failed: {}".format(e))
        rc = proc.returncode
        data = None
        if out and out.strip():
            try:
                data = json.loads(out)
            except ValueError:
                data = None
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            e = data["error"]
            return False, None, _error(
                str(e.get("message") or "abssctl failed"),
                e.get("hint"),
                e.get("kind"),
                e.get("exit_code", rc),
            )
        if rc != 0:
            return False, data, _from_stderr(err, rc, [str(a) for a in args])
        if data is None:
            return False, None, _error(
                "abssctl {} printed no JSON".format(" ".join(str(a) for a in args[:2])),
                "this abssctl may be too old for the plugin: upgrade the abssctl package",
            )
        return True, data, None

    def has(self, *command):
        """Whether this abssctl knows `command` (e.g. has("doctor"), has("backup",
        "schedule")): its `--help` exits 0. Asked once per command, then cached."""
        key = tuple(command)
        if key not in self._probes:
            try:
                r = subprocess.run(
                    [self.exe] + list(command) + ["--help"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=15,
                    env=self._env(),
                )
                self._probes[key] = r.returncode == 0
            except (OSError, subprocess.SubprocessError):
                self._probes[key] = False
        return self._probes[key]


def format_error(error):
    """One failure as shown in a box: the message, then the hint."""
    if not error:
        return "unknown error"
    text = str(error.get("message") or "abssctl failed")
    if error.get("hint"):
        text += "\n\nHint: " + str(error["hint"])
    return text


def updates_file(cli):
    """Path of the last recorded update check (`version check --record`), from the
    configuration abssctl resolves (root + state_dir), or None if it cannot be known."""
    ok, data, _ = cli.run(["config", "show"])
    if not ok or not isinstance(data, dict):
        return None
    keys = {k.get("key"): k.get("value") for k in data.get("keys", []) if isinstance(k, dict)}
    state = keys.get("state_dir")
    if not isinstance(state, str):
        return None
    root = keys.get("root") if isinstance(keys.get("root"), str) else "/"
    return os.path.join(root, state.lstrip("/"), "updates.json")


def read_json_file(path):
    """A JSON file's content, or None when it is absent or unreadable."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
