"""Training the shipped phantom demonstration LDMs on the phantom train split (`train`, `data`)."""
