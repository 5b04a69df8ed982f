"""``python -m appliance`` is the same as the ``appliance`` console script."""

from appliance.cli import main

# Guarded: worker processes (spawned by `audit verify`) import the main module again.
if __name__ == "__main__":
    main()
