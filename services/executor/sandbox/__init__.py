"""The widget sandbox: everything that runs inside the zygote and its children.

Nothing in this package may import service settings or anything else that
could carry credentials: it runs next to widget code.
"""
