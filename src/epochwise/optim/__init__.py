"""Optimizers (Keras names over torch.optim) and learning-rate schedules."""
