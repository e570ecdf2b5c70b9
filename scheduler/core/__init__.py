"""The pure core: records and decisions that take ``now`` and records as arguments, no I/O."""
