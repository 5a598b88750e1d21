#!/usr/bin/python3
"""Set up the Actual Budget instance (abssctl firstboot)

Environment (set by firstboot.d/40actual-budget from /etc/inithooks.conf):
    APP_DOMAIN    domain to serve it under; DEFAULT: the box's FQDN when it has one,
                  else budget.local; empty: asked for
    APP_PASS      the Actual server password; empty: asked for

Runs `abssctl --yes firstboot --domain DOMAIN --password-stdin`, the password on stdin
(never on a command line), then writes APP_DOMAIN to the inithooks cache for later
hooks. A second run changes nothing: abssctl firstboot is idempotent.
"""

import os
import signal
import socket
import subprocess
import sys

TITLE = "TurnKey GNU/Linux - First boot configuration"
# The name of a box without a real FQDN: TurnKey's own default hostnames have no domain.
FALLBACK_DOMAIN = "budget.local"
# abssctl's exit code for bad input (a domain it refuses): asked again, interactively.
EXIT_VALIDATION = 2
# abssctl's exit code for a machine lacking something (here: abssctl itself).
EXIT_ENVIRONMENT = 3


def default_domain(fqdn=socket.getfqdn):
    """The box's FQDN (hostname -f) when it is one, else budget.local."""
    name = (fqdn() or "").strip().rstrip(".").lower()
    if (
        "." not in name
        or name.startswith("localhost")
        or name.endswith(".localdomain")
    ):
        return FALLBACK_DOMAIN
    return name


def firstboot(domain, password, env):
    """Run abssctl firstboot; its stdout passes through. Returns (rc, stderr)."""
    # Not handed on: abssctl never needs the other hooks' preseeded secrets.
    child_env = {k: v for k, v in env.items() if k not in ("APP_PASS", "ROOT_PASS")}
    try:
        p = subprocess.run(
            ["abssctl", "--yes", "firstboot", "--domain", domain, "--password-stdin"],
            input=password + "\n",
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
    except FileNotFoundError:
        msg = "error: abssctl is not installed (or not on PATH)\n"
        sys.stderr.write(msg)
        return EXIT_ENVIRONMENT, msg
    sys.stderr.write(p.stderr)
    return p.returncode, p.stderr


def main(env=None, fqdn=socket.getfqdn):
    env = dict(os.environ if env is None else env)
    domain = env.get("APP_DOMAIN", "").strip()
    password = env.get("APP_PASS", "")
    # Imported here: the module stays importable (and testable) without libinithooks.
    from libinithooks import inithooks_cache

    dialog = None

    def ask():
        nonlocal dialog
        if dialog is None:
            from libinithooks.dialog_wrapper import Dialog

            dialog = Dialog(TITLE)
        return dialog

    interactive = not domain or not password
    if not domain:
        init = inithooks_cache.read("APP_DOMAIN") or default_domain(fqdn)
        domain = ask().get_input(
            "Actual Budget Domain",
            "Enter the domain to serve Actual Budget under (HTTPS).\n"
            "DEFAULT uses " + default_domain(fqdn) + ".",
            init,
        )
    if domain.strip() == "DEFAULT":
        domain = default_domain(fqdn)
    domain = domain.strip()
    if not password:
        password = ask().get_password(
            "Actual Budget Password",
            "Please enter the password of the Actual Budget server.",
        )
    while True:
        rc, err = firstboot(domain, password, env)
        if rc != EXIT_VALIDATION or not interactive:
            break
        # Bad input (a domain abssctl refuses): say why, ask again.
        ask().error(err.strip() or "abssctl refused the domain")
        domain = ask().get_input(
            "Actual Budget Domain", "Enter the domain to serve Actual Budget under.", domain
        ).strip()
    if rc == 0:
        inithooks_cache.write("APP_DOMAIN", domain)
    return rc


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(main())
