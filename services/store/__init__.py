"""The store service: the HTTP face of the platform.

It owns businesses and their API keys, the context source (customers and
conversations), widgets and their Run Test, and serves the sidebars the
orchestrator assembled. It publishes ``conversation.opened`` and talks to
executors only through the broker; ``main()`` in ``__main__`` is its entry point.
"""
