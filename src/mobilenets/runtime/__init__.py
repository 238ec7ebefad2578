"""Run a model or an exported file: one runner per runtime, the precisions each keeps, loading any file."""
