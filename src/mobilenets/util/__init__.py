"""What every stage uses: atomic file writes, the CPU and its features, optional extras, quiet native output."""
