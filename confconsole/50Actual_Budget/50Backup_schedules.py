"""When each instance is backed up, what is kept"""

# A confconsole menu entry of the Actual Budget plugin: executable because confconsole
# lists only executable *.py files, but imported by confconsole, never run as a script
# (so no #! line). confconsole imports every plugin at start-up with no error handling,
# so this top level only defines names: the plugin's code (abssctl_menus.py beside this
# file) is loaded inside run().

MENU = "schedules"


def _menus():
    import os
    import sys
    import types

    key = "abssctl_confconsole_abssctl_menus"
    if key not in sys.modules:
        here = os.path.dirname(os.path.abspath(globals().get("PLUGIN_PATH") or __file__))
        path = os.path.join(here, "abssctl_menus.py")
        mod = types.ModuleType(key)
        mod.__file__ = path
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), path, "exec"), mod.__dict__)
        sys.modules[key] = mod
    return sys.modules[key]


def run():
    try:
        menus = _menus()
    except Exception as e:
        text = "The Actual Budget plugin could not load: {}: {}".format(type(e).__name__, e)
        con = globals().get("console")
        if con is not None and globals().get("interactive", True):
            con.msgbox("Actual Budget", text)
        else:
            print(text)
        return None
    return menus.entry(MENU, globals())
