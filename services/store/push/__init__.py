"""Live push to browsers: the per-process fan-out hub, its broker feed, and the SSE encoding.

``feed`` takes ``sidebar.widget`` and ``sidebar.ready`` off RabbitMQ, ``hub``
buffers them per business and hands them to the connected streams, ``sse``
writes them as Server-Sent Events.
"""
