"""Server-rendered pages and their shipped assets."""
