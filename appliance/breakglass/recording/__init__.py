"""Recording what a vendor engineer does in a break-glass window (ADR 0021)."""
