"""The pure core: decisions and records, given ``now`` and facts as arguments."""
