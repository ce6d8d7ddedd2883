"""What the three services share: event catalogue, event store, messaging, settings, auth."""
