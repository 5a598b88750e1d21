"""A console with confconsole's API that shows every screen with the REAL `dialog` program.

confconsole's own Console (confconsole.py) wraps pythondialog (`import dialog`, Debian's
python3-dialog), which runs the `dialog` binary on the terminal and reads the answer from
dialog's output fd. This class does the same, so the plugin's screens are drawn by the
dialog that TurnKey runs, with the same persistent options (Select/Back buttons,
--no-collapse, --colors, the backtitle) and the same sizes (65x25 boxes), and the same
return conventions as console_double.py: codes "ok"/"cancel" (pythondialog's Dialog.OK
and Dialog.CANCEL are those strings), menu()/inputbox() -> (code, value),
_wrapper(name, text, ...) for any pythondialog box (the plugin uses "passwordbox" and
"infobox" through it). Written for the tests from confconsole's documented behaviour;
it is not confconsole's code.

Every screen is also appended to `log` (if given) as one line of JSON, so a failed run
under tmux says what was asked, not only what the terminal showed last.
"""

import json

import dialog  # pythondialog: confconsole's own dependency (Debian: python3-dialog)

BACKTITLE = "TurnKey GNU/Linux Configuration Console"


class DialogConsole:
    def __init__(self, title=BACKTITLE, width=65, height=25, log=None):
        self.width = width
        self.height = height
        self.log = log
        self.d = dialog.Dialog(dialog="dialog")
        # The options confconsole sets on every box (its Console.__init__).
        for opt in (["--no-collapse"], ["--ok-label", "Select"], ["--cancel-label", "Back"],
                    ["--colors"], ["--backtitle", title]):
            self.d.add_persistent_args(opt)

    def _record(self, kind, title, text, result):
        if not self.log:
            return
        shown = result if kind != "passwordbox" else (
            [result[0], "*" * len(result[1])] if isinstance(result, tuple) else result)
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"kind": kind, "title": title, "text": text,
                                "result": shown}) + "\n")

    def _wrapper(self, name, text, *args, **kws):
        """Any pythondialog box by name, text first (confconsole prefixes a newline). Esc
        comes back as its own code ("esc"), which the plugin treats as any non-"ok" code;
        confconsole asks "really quit?" there, which a test walk never presses."""
        box = getattr(self.d, name, None)
        if box is None:
            raise ValueError("dialog box not supported: {}".format(name))
        ret = box("\n" + text, *args, **kws)
        self._record(name, kws.get("title"), text, ret)
        return ret

    def infobox(self, text):
        return self._wrapper("infobox", text)

    def yesno(self, text, autosize=False):
        if autosize:
            return self._wrapper("yesno", text + "\n ", 0, 0)
        return self._wrapper("yesno", text, 10, 30)

    def msgbox(self, title, text, button_label="ok", autosize=False):
        if autosize:
            return self._wrapper("msgbox", text + "\n ", 0, 0, title=title,
                                 ok_label=button_label)
        return self._wrapper("msgbox", text, self.height, self.width, title=title,
                             ok_label=button_label)

    def inputbox(self, title, text, init="", ok_label="OK", cancel_label="Cancel"):
        return self._wrapper("inputbox", text, self.height, self.width, title=title,
                             init=init, ok_label=ok_label, cancel_label=cancel_label,
                             no_cancel=cancel_label == "")

    def menu(self, title, text, choices, no_cancel=False):
        choices = [tuple(c) for c in choices]
        return self._wrapper("menu", text, self.height, self.width,
                             menu_height=len(choices) + 1, title=title, choices=choices,
                             no_cancel=no_cancel)

    def form(self, title, text, fields, ok_label="Apply", cancel_label="Cancel",
             autosize=False):
        height, width = (0, 0) if autosize else (self.height, self.width)
        return self._wrapper("form", text, elements=fields, height=height, width=width,
                             form_height=len(fields) + 1, title=title, ok_label=ok_label,
                             cancel_label=cancel_label)
