"""The group model: one gradient-boosted model learned across a group of series."""
