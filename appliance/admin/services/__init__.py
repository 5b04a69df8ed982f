"""What the admin service does, apart from HTTP: accounts, identities, grants."""
