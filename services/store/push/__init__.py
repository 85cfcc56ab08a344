"""Live push to browsers: the per-process fan-out hub, its broker feed, and the SSE encoding.

``feed`` takes ``sidebar.widget`` and ``sidebar.ready`` off RabbitMQ for the
businesses ``bindings`` has bound it to (those with a stream on this process,
and for a few minutes after), through the ``binder`` port (``memory_binder``
is its fake); ``hub`` buffers them per business and hands them to the
connected streams; ``sse`` writes them as Server-Sent Events.
"""
