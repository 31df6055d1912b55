"""What a run can tell about itself: batch-size explorer, probes, LR range test, overfitting, plots."""
