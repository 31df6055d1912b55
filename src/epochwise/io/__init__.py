"""Files: atomic writes, safe loading, and the training state a resumed run continues from."""
