"""The admin service: accounts, enrollment into the overlay, break-glass, audit export."""
