"""A stand-in for confconsole's `console` (confconsole.py's Console) with scripted answers.

It has the methods and return values confconsole gives plugins: codes "ok"/"cancel";
menu() -> (code, tag); inputbox() -> (code, text); yesno() -> code; msgbox/infobox ->
"ok"; _wrapper("passwordbox", ...) -> (code, text), _wrapper("infobox", ...) -> "ok".
Boxes that only show something (msgbox, infobox) are recorded, never scripted. Every question takes the next answer:

    Menu("Start")          choose the entry tagged "Start" (it must be offered)
    Menu(callable)         choose callable(choices) (for runs against the real abssctl)
    Text("budget")         type this into an inputbox (Text(None): keep the initial value)
    Password("pw")         type this into a passwordbox
    Yes / No               answer a yesno
    Cancel                 press Back/Cancel on whatever is asked

When the script is used up every question is cancelled (so a flow unwinds to its
parent menu); `unused()` lists answers never asked for.
"""

OK = "ok"
CANCEL = "cancel"


class Answer:
    def __init__(self, kind, value=None):
        self.kind = kind
        self.value = value

    def __repr__(self):
        return "{}({!r})".format(self.kind, self.value)


def Menu(tag):
    return Answer("menu", tag)


def Text(value):
    return Answer("inputbox", value)


def Password(value):
    return Answer("passwordbox", value)


Yes = Answer("yesno", True)
No = Answer("yesno", False)
Cancel = Answer("cancel")


class ScriptError(AssertionError):
    pass


class ScriptedConsole:
    def __init__(self, answers=(), max_extra=200):
        self.answers = list(answers)
        self.calls = []  # (kind, title, text, details)
        self.extra = 0
        self.max_extra = max_extra

    # -- bookkeeping -----------------------------------------------------------------
    def _take(self, kind):
        if not self.answers:
            self.extra += 1
            if self.extra > self.max_extra:
                raise ScriptError("the flow keeps asking after the script ended: {}".format(
                    self.calls[-3:]))
            return Answer("cancel")
        a = self.answers.pop(0)
        if a.kind not in (kind, "cancel"):
            raise ScriptError("expected a {} answer, but the flow shows a {}: {}".format(
                a.kind, kind, self.calls[-1]))
        return a

    def unused(self):
        return list(self.answers)

    def boxes(self, kind="msgbox"):
        """The texts shown in boxes of `kind`, in order."""
        return [c[2] for c in self.calls if c[0] == kind]

    def shown(self):
        """Every text shown or asked, as one string (for `assertIn`)."""
        return "\n".join("{} {}".format(c[1] or "", c[2]) for c in self.calls)

    # -- confconsole's Console API -----------------------------------------------------
    def infobox(self, text):
        self.calls.append(("infobox", None, text, None))
        return OK

    def msgbox(self, title, text, button_label="ok", autosize=False):
        self.calls.append(("msgbox", title, text, None))
        return OK

    def yesno(self, text, autosize=False):
        self.calls.append(("yesno", None, text, None))
        a = self._take("yesno")
        return OK if a.kind == "yesno" and a.value else CANCEL

    def inputbox(self, title, text, init="", ok_label="OK", cancel_label="Cancel"):
        self.calls.append(("inputbox", title, text, init))
        a = self._take("inputbox")
        if a.kind == "cancel":
            return CANCEL, ""
        return OK, init if a.value is None else a.value

    def menu(self, title, text, choices, no_cancel=False):
        choices = [tuple(c) for c in choices]
        self.calls.append(("menu", title, text, choices))
        tags = [c[0] for c in choices]
        if len(set(tags)) != len(tags):
            raise ScriptError("menu tags must be unique for dialog: {}".format(tags))
        a = self._take("menu")
        if a.kind == "cancel":
            return CANCEL, ""
        tag = a.value(choices) if callable(a.value) else a.value
        if tag not in tags:
            raise ScriptError("'{}' is not offered in menu '{}': {}".format(tag, title, tags))
        return OK, tag

    def form(self, title, text, fields, ok_label="Apply", cancel_label="Cancel",
             autosize=False):
        raise ScriptError("the plugin does not use forms")

    def _wrapper(self, dialog, text, *args, **kws):
        if dialog == "infobox":
            return self.infobox(text)
        if dialog != "passwordbox":
            raise ScriptError("unexpected dialog through _wrapper: {}".format(dialog))
        self.calls.append(("passwordbox", kws.get("title"), text, None))
        a = self._take("passwordbox")
        if a.kind == "cancel":
            return CANCEL, ""
        return OK, a.value
