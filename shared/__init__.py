"""Wire contracts and infrastructure adapters shared by the sidebar services.

Only contracts (what crosses a process boundary) and adapters for RabbitMQ,
MongoDB, logging and metrics live here; domain logic stays in its service.
"""
