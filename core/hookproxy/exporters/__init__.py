"""Built-in exporters: plugins on the observer hooks, registered through the core's own entry
points exactly like a third-party exporter would be (``metrics``, ``access-log``, ``usage``)."""
