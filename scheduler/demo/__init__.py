"""``share-scheduler demo``: the whole flow against the built-in simulator, on SQLite."""
