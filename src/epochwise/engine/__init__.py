"""The training loop, the step, running logs, fit's checked arguments, signals and reports."""
