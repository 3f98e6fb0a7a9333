"""DAgger: β schedules, turn-level mixing, rollouts, relabeling, aggregation, the loop."""
