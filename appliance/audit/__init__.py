"""The audit log: every action of the admin service and the installer is recorded here."""
