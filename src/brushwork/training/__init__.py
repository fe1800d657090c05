"""Method-agnostic training: optimisation, schedules, logging, samples and checkpoints."""
