"""Training the demo models on procedurally drawn pictures (`python -m artgen.training.demo`)."""
