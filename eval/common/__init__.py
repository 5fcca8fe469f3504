"""What every evaluation shares: result files (JSON + markdown + PNG) and run metadata."""
