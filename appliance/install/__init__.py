"""The offline installer: verify media, import it, preflight, converge with Ansible, check."""
