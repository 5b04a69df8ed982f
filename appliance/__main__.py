"""``python -m appliance`` is the same as the ``appliance`` console script."""

from appliance.cli import main

main()
