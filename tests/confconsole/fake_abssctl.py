"""A fake abssctl for the plugin's CPU-tier tests: installed as `abssctl` on PATH by
helpers.fake_path(). It records every call (argv and stdin) as one JSON line in
$FAKE_ABSSCTL_DIR/calls.jsonl and answers with canned JSON.

Answers: the rules in $FAKE_ABSSCTL_DIR/responses.json (a list of {"match": [...],
"rc": N, "stdout": obj-or-text, "stderr": text}) first, then DEFAULTS; a rule matches
when its words are a prefix of the argv without the global flags --json and --yes; the
longest match wins. `X --help` exits 0 unless X is listed in
$FAKE_ABSSCTL_DIR/missing.json (a list of command word lists), as an old abssctl would.
"""

import json
import os
import sys

INSTANCES = [
    {"name": "budget", "domain": "budget.example.org", "url": "https://budget.example.org/",
     "port": 5000, "https_port": None, "version_binding": "current", "version": "26.9.0",
     "active_state": "active", "sub_state": "running", "health": "up",
     "update_available": "26.10.0"},
    {"name": "family", "domain": "family.example.org", "url": "https://family.example.org/",
     "port": 5001, "https_port": None, "version_binding": "26.9.0", "version": "26.9.0",
     "active_state": "inactive", "sub_state": "dead", "health": "stopped"},
]
BACKUPS = [
    {"id": "budget-20261126T080000Z", "instance": "budget", "created_at": "2026-11-26T08:00:00Z",
     "reason": "manual", "status": "present", "size_bytes": 1000},
    {"id": "budget-20261127T030000Z", "instance": "budget", "created_at": "2026-11-27T03:00:00Z",
     "reason": "scheduled", "status": "present", "size_bytes": 1200},
]
SCHEDULES = [
    {"instance": "budget", "timer": "abssctl-backup@budget.timer",
     "schedule": {"on_calendar": "daily", "randomized_delay": "1h", "keep_daily": 7,
                  "keep_weekly": 4, "keep_monthly": 6},
     "next_run": "2026-11-28T03:00:00Z", "last_run": "2026-11-27T03:00:00Z",
     "last_result": "success", "last_scheduled_backup": "budget-20261127T030000Z"},
    {"instance": "family", "timer": "abssctl-backup@family.timer", "schedule": None,
     "next_run": None, "last_run": None, "last_result": "never",
     "last_scheduled_backup": None},
]


def action(name, verb, **extra):
    r = {"name": name, "unit": "actual-sync@{}.service".format(name), "action": verb,
         "changed": True, "dry_run": False, "healthy_after_ms": 1500, "planned_actions": [],
         "backups": []}
    r.update(extra)
    return r


DEFAULTS = [
    (["config", "show"], 0, {"keys": [
        {"key": "root", "value": os.environ.get("FAKE_ABSSCTL_ROOT", "/nonexistent")},
        {"key": "state_dir", "value": "/var/lib/abssctl"}]}),
    (["instance", "list"], 0, {"instances": INSTANCES, "warnings": []}),
    (["backup", "list"], 0, {"backups": BACKUPS}),
    (["backup", "schedule", "--list"], 0, {"schedules": SCHEDULES, "warnings": []}),
    (["backup", "schedule"], 0, {"instance": "budget", "timer": "abssctl-backup@budget.timer",
                                 "schedule": {"on_calendar": "*-*-* 03:00"}, "changed": True}),
    (["backup", "create"], 0, {"id": "budget-20261128T100000Z", "instance": "budget",
                               "size": 4096, "files": 3}),
    (["backup", "restore"], 0, {"id": "budget-20261126T080000Z", "instance": "budget",
                                "mode": "in-place", "domain": "budget.example.org",
                                "port": 5000, "version": "26.9.0",
                                "pre_restore_backup": "budget-20261128T100500Z",
                                "changed": True}),
    (["instance", "create"], 0, {"name": "new", "domain": "new.example.org",
                                 "url": "https://new.example.org/", "port": 5002,
                                 "version": "26.9.0", "changed": True, "password_set": True,
                                 "warnings": []}),
    (["instance", "start"], 0, action("budget", "start")),
    (["instance", "stop"], 0, action("budget", "stop", healthy_after_ms=None)),
    (["instance", "restart"], 0, action("budget", "restart")),
    (["instance", "set-domain"], 0, action("budget", "set-domain")),
    (["instance", "delete"], 0, action("budget", "delete")),
    (["instance", "logs"], 0, {"name": "budget", "unit": "actual-sync@budget.service",
                               "lines": ["Nov 27 server started", "Nov 27 listening on 5000"]}),
    (["instance", "rollback"], 0, {"id": "budget-20261120T000000Z", "instance": "budget",
                                   "mode": "in-place", "domain": "budget.example.org",
                                   "version": "26.8.0", "changed": True}),
    (["version", "check"], 0, {"latest": "26.10.0", "installed": ["26.9.0"],
                               "current": "26.9.0", "update_available": True}),
    (["upgrade"], 0, {"target": "26.10.0", "installed": True, "mode": "rolling", "ok": True,
                      "instances": [{"instance": "budget", "status": "upgraded",
                                     "from": "26.9.0", "to": "26.10.0"}]}),
]


def load(state, name, default):
    try:
        with open(os.path.join(state, name), encoding="utf-8") as f:
            return json.load(f)
    except OSError:
        return default


def main():
    state = os.environ["FAKE_ABSSCTL_DIR"]
    argv = sys.argv[1:]
    words = [a for a in argv if a not in ("--json", "--yes")]
    if words and words[-1] == "--help":
        with open(os.path.join(state, "probes.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(words[:-1]) + "\n")
        missing = [tuple(m) for m in load(state, "missing.json", [])]
        return 2 if tuple(words[:-1]) in missing else 0
    stdin = "" if sys.stdin is None else sys.stdin.read()
    with open(os.path.join(state, "calls.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({"argv": argv, "stdin": stdin}) + "\n")
    best = None
    rules = [(r["match"], r.get("rc", 0), r.get("stdout"), r.get("stderr", ""))
             for r in load(state, "responses.json", [])]
    rules += [(m, rc, out, "") for m, rc, out in DEFAULTS]
    for match, rc, out, err in rules:
        if words[:len(match)] == match and (best is None or len(match) > len(best[0])):
            best = (match, rc, out, err)
    if best is None:
        sys.stderr.write("error: fake abssctl has no answer for {}\n".format(words))
        return 1
    _, rc, out, err = best
    if out is not None:
        sys.stdout.write(out if isinstance(out, str) else json.dumps(dict(out, schema_version=1)
                                                                     if isinstance(out, dict)
                                                                     else out))
        sys.stdout.write("\n")
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main())
