"""Widget egress, on the executor's side: the policy and the supervisor that connects for widgets.

A widget process cannot create a network socket (its seccomp filter refuses
``socket()`` and ``connect()``); it asks the supervisor over its private channel,
which resolves, checks the address against the policy, connects, and hands back
the connected socket.
"""
