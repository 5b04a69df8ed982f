"""FIPS policy: approved algorithms, the vendor's signing keys, signatures."""
