"""The executor service: runs one widget job at a time per slot, isolated in a
separate OS process, validates what the widget returned and publishes the result."""
