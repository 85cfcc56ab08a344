"""The orchestrator service: turns ``conversation.opened`` into one job per active
widget, collects the results, assembles the sidebar and publishes ``sidebar.ready``.
It keeps no state of its own: every run lives in MongoDB, so replicas can come and go."""
