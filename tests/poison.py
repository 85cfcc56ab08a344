"""The poison catalogue: hostile widget bodies with the status and error type each must get.

Shared by the sandbox's integration suite and the system suite that runs them
through the real broker and executor service.
"""

from __future__ import annotations


def widget(body: str) -> str:
    """Wrap a body as ``get_sidebar_data(context)``."""
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    return f"def get_sidebar_data(context):\n{lines}\n"


POISON = {
    "infinite loop": ("while True:\n    pass", "timeout", "timeout"),
    "memory bomb": ("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))", "error", "memory"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "error", "exception"),
    "deep recursion": ("def down(n):\n    return down(n + 1)\nreturn down(0)", "error", "exception"),
    "os.system": ("import os\nassert os.system('id') == 0, 'ran a shell'", "error", "exception"),
    "subprocess": ("import subprocess\nsubprocess.run(['id'])", "error", "exception"),
    "os._exit": ("import os\nos._exit(3)", "error", "crashed"),
    "segfault": ("import ctypes\nctypes.string_at(0)", "error", "crashed"),
    "read /etc/shadow": ("return {'title': open('/etc/shadow').read(), 'items': []}", "error", "exception"),
    "read /proc/1/environ": ("return {'title': open('/proc/1/environ').read(), 'items': []}", "error", "exception"),
    "read parent environ": (
        "import os\nreturn {'title': open(f'/proc/{os.getppid()}/environ').read(), 'items': []}",
        "error",
        "exception",
    ),
    "write a file": ("open('/tmp/owned', 'w').write('x')", "error", "exception"),
    # Without root every widget has the executor's uid: only seccomp keeps these to the widget itself.
    "limits of the zygote": (
        "import os, resource\nlimits = resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE)\n"
        "return {'title': str(limits), 'items': []}",
        "error",
        "exception",
    ),
    "priority of the whole uid": (
        "import os\nreturn {'title': str(os.getpriority(os.PRIO_USER, 0)), 'items': []}",
        "error",
        "exception",
    ),
    # Loopback targets only: metadata, link-local and private addresses are refused by the
    # same check, which tests/unit/test_egress_policy.py covers without sending them anything.
    "loopback on an open port": (
        "import socket\nsocket.create_connection(('127.0.0.1', 80), 1)",
        "error",
        "egress_denied",
    ),
    "raw _socket": (
        "import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', 443))",
        "error",
        "egress_denied",
    ),
    "broker port": ("import socket\nsocket.create_connection(('127.0.0.1', 5672), 1)", "error", "egress_denied"),
    "database port": ("import socket\nsocket.create_connection(('127.0.0.1', 27017), 1)", "error", "egress_denied"),
    "IPv6 loopback": ("import socket\nsocket.create_connection(('::1', 443), 1)", "error", "egress_denied"),
    "name resolving to loopback": (
        "import requests\nrequests.get('http://localhost:80/', timeout=1)",
        "error",
        "egress_denied",
    ),
    "decimal IP": ("import requests\nrequests.get('http://2130706433:5672/', timeout=1)", "error", "egress_denied"),
    "hex shorthand IP": ("import socket\nsocket.create_connection(('0x7f.1', 5672), 1)", "error", "egress_denied"),
    "IPv4-mapped IPv6": (
        "import requests\nrequests.get('http://[::ffff:127.0.0.1]:5672/', timeout=1)",
        "error",
        "egress_denied",
    ),
    "objects that are not JSON": ("return {'title': object(), 'items': []}", "error", "invalid_return"),
    "a 50 MB string": ("return {'title': 'x' * 50_000_000, 'items': []}", "error", "output_too_large"),
    "sleeping past the deadline": ("import time\ntime.sleep(60)", "timeout", "timeout"),
    "ignoring SIGTERM and SIGALRM": (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)",
        "timeout",
        "timeout",
    ),
    "a module that does not exist": ("import no_such_module_anywhere", "error", "exception"),
}
